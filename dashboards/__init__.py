"""Dashboard pages (Jinja2, server-rendered)."""
