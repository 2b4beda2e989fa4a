"""Importers for public lumbar MRI dataset layouts: they read exams where they lie and hand back our convention."""
