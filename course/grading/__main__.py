import sys

from course.grading.runner import main

sys.exit(main())
