"""The distillation loss and the trainer that uses it.

Response-based distillation (Hinton et al., 2015): the student matches the teacher's softened
distribution, KL(softmax(t/T) || softmax(s/T)) x T^2 (the T^2 keeps its gradients on the scale of the
hard-label loss as T changes), mixed with ordinary cross-entropy on the labels by alpha.
"""

from __future__ import annotations

IGNORED_LABEL = -100  # rows without a hard label (teacher-labelled transfer text): soft loss only


def distillation_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float,
                      label_smoothing: float = 0.0):
    """alpha x KL(T) x T^2 + (1 - alpha) x CE, CE averaged over the rows that have a label."""
    import torch
    import torch.nn.functional as functional

    soft = functional.kl_div(
        functional.log_softmax(student_logits.float() / temperature, dim=-1),
        functional.log_softmax(teacher_logits.float() / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * temperature**2
    labelled = labels != IGNORED_LABEL
    if alpha == 1.0 or not bool(labelled.any()):
        hard = torch.zeros((), device=student_logits.device)
    else:
        hard = functional.cross_entropy(student_logits[labelled].float(), labels[labelled],
                                        label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def representation_loss(student_pooled, teacher_pooled, projection):
    """1 - cosine between the projected student sentence vector and the teacher's."""
    import torch.nn.functional as functional

    projected = projection(student_pooled.float())
    return (1.0 - functional.cosine_similarity(projected, teacher_pooled.float(), dim=-1)).mean()


def distillation_trainer_class(temperature: float, alpha: float, hidden_weight: float):
    """A `transformers.Trainer` whose training loss is the distillation loss.

    Batches carry `teacher_logits` (and `teacher_pooled` with a representation loss) from the
    collator; evaluation batches have neither and get the trainer's usual loss.
    """
    from transformers import Trainer

    from edgetune.distill.teacher_logits import mean_pool

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "teacher_logits" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            inputs = dict(inputs)
            teacher_logits = inputs.pop("teacher_logits")
            teacher_pooled = inputs.pop("teacher_pooled", None)
            labels = inputs.pop("labels")
            outputs = model(**inputs, output_hidden_states=teacher_pooled is not None)
            loss = distillation_loss(outputs.logits, teacher_logits, labels, temperature=temperature, alpha=alpha,
                                     label_smoothing=self.args.label_smoothing_factor)
            if teacher_pooled is not None:
                projection = self.accelerator.unwrap_model(model).distill_projection
                student_pooled = mean_pool(outputs.hidden_states[-1], inputs["attention_mask"])
                loss = loss + hidden_weight * representation_loss(student_pooled, teacher_pooled, projection)
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer
