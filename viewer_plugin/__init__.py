"""OHIF v3 extension + "LDH review" mode as ES modules (``js/``), loaded at runtime by the prebuilt OHIF viewer.

The viewer itself (npm ``@ohif/app``'s ``dist/``) is installed by ``install-ohif.sh`` into ``ohif/dist``;
``ai_service/api/routers/viewer.py`` serves both at ``/viewer``.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
JS_DIR = PLUGIN_DIR / "js"
DEFAULT_OHIF_DIR = PLUGIN_DIR / "ohif" / "dist"
