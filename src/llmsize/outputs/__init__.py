"""What a run writes: report sections rendered from Jinja2 templates (``templates/``)."""
