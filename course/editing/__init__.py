"""Rank-one editing of one fact in one MLP (Meng et al. 2022, ROME), fine-tuning for comparison,
and the measures of an edit: efficacy, generalization, specificity.

    from course.editing import rome_edit, request_for, edit_prompts, edit_scores
"""

from course.editing.finetune import finetune_edit
from course.editing.measures import (EditPrompts, edit_prompts, edit_requests, edit_scores, request_for,
                                     right_before)
from course.editing.rome import (Edit, EditRequest, closed_form_update, key_second_moment, mlp_keys,
                                 optimize_value, prefixes, rome_edit)

__all__ = ["finetune_edit", "EditPrompts", "edit_prompts", "edit_requests", "edit_scores", "request_for",
           "right_before", "Edit", "EditRequest", "closed_form_update", "key_second_moment", "mlp_keys",
           "optimize_value", "prefixes", "rome_edit"]
