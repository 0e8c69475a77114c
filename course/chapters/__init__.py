"""The chapters: one folder each (``course/chapters/<chapter>/``) holding its lesson, checks, findings and expected values.

The toolkit never imports a chapter; a chapter imports the toolkit."""
