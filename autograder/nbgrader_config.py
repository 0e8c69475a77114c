"""nbgrader configuration for the Inside GPT-2 course directory (this folder).

Run nbgrader from this folder: `cd autograder && nbgrader generate_assignment ch1_residual_stream`.
The source notebooks under source/ are written by `python -m course.build`; edit the
chapter sources in course/chapters/, never these.
"""

import os

c = get_config()  # noqa: F821  (nbgrader provides it)

HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "inside-gpt2"
c.CourseDirectory.root = HERE
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "gradebook.db")

# What a student sees in place of a solution: the same words as the self-study stubs.
c.ClearSolutions.code_stub = {
    "python": 'raise NotImplementedError("fill in this function, then run the check below")',
}
c.ClearSolutions.enforce_metadata = True
c.ClearHiddenTests.enforce_metadata = True

# Every cell gets at most this long when grading; a stuck cell is interrupted and
# scores zero, and the rest of the notebook and of the class still runs.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = "python3"

# Grading runs the cells that decide the score: read-only demo and visible-check cells
# are replaced by a one-line note before the notebook runs (course.grading.skip_demos).
from nbgrader.converters import Autograde  # noqa: E402

from course.grading.skip_demos import SkipDemos  # noqa: E402

c.Autograde.autograde_preprocessors = [SkipDemos, *Autograde.class_traits()["autograde_preprocessors"].default()]

# Feedback: hidden tests taken out of the cells, and a page that loads nothing from the
# internet (nbgrader's own template pulls MathJax from a CDN; ours inlines a vendored copy).
import nbgrader  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

from course.grading.feedback import PlainErrors  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, PlainErrors, CSSHTMLHeaderPreprocessor]
c.HTMLExporter.template_name = "feedback_offline"
c.HTMLExporter.filters = {"offline_mathjax": "course.grading.feedback.offline_mathjax"}
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(HERE, "templates"),
    os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates"),
]

# A local exchange directory (distribute / collect on one machine or a shared disk).
c.Exchange.root = os.path.join(HERE, "exchange")
c.Exchange.path_includes_course = True
