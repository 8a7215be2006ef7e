"""What apps import: `Bundle.load(path)` and the types it hands back.

`Bundle` is the task-neutral envelope (envelope.py); `Bundle.load` returns the class the task
registry names for the bundle's task, e.g. `ClassificationBundle` (tasks/classification.py) or
`GenerationBundle` (tasks/generation/bundle.py, imported only when such a bundle loads, so a
classifier's cold start does not pay for it).
"""

from edgetune_runtime.envelope import Bundle, GoldenCheck, verify_files
from edgetune_runtime.tasks.classification import ClassificationBundle, Prediction

__all__ = ["Bundle", "ClassificationBundle", "GoldenCheck", "Prediction", "verify_files"]
