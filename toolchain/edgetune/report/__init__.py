"""`edgetune report`: merge benchmark results from many devices into one table and an accuracy-versus-latency plot.

The pieces are generic so other reports (`edgetune run`) reuse them: `ReportRow`, `pareto_front`,
`format_table` and `write_pareto_plot`.
"""
