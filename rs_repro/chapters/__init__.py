"""The book's chapters, each in two halves: ``<stem>/compute.py`` (rules, plan, units) and ``<stem>/page.py``."""
