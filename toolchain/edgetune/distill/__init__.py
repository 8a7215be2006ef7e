"""Knowledge distillation: a fine-tuned teacher into a smaller student (`edgetune distill`)."""
