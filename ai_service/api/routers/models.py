"""``GET /api/models``: the model versions in use and what the registry holds."""

from fastapi import APIRouter, Depends

from ai_service.api.deps import get_state, reader
from ai_service.api.state import AppState
from ai_service.registry import CLS_MODEL, SEG_MODEL

router = APIRouter(prefix="/api/models", tags=["models"], dependencies=[Depends(reader)])
CARD_KEYS = ("task", "created_utc", "metrics", "operating_threshold", "data", "intended_use", "disclaimer", "command",
             "architecture", "postprocess", "refiner", "derived_from")  # how a version is served, what from


@router.get("", summary="Model versions in use and in the registry")
def models(state: AppState = Depends(get_state)) -> dict:
    registry = {}
    for name in (SEG_MODEL, CLS_MODEL):
        registry[name] = {"versions": state.registry.versions(name), "aliases": state.registry.aliases(name)}
    in_use = {}
    for role, name, ref_setting in (("segmentation", SEG_MODEL, state.settings.seg_model),
                                    ("classification", CLS_MODEL, state.settings.cls_model)):
        version = getattr(state.versions, role)
        card = {}
        try:
            card = state.registry.resolve(name, version).card
        except Exception:  # noqa: BLE001 - an engine given by the caller may come from elsewhere
            pass
        in_use[role] = {"name": name, "version": version, "requested": ref_setting,
                        "card": {k: card[k] for k in CARD_KEYS if k in card}}
    engine = state.engine
    return {
        "in_use": in_use,
        "version": state.versions.label,
        "operating_threshold": engine.threshold if engine is not None else None,
        "engine_loaded": engine is not None,
        "registry": registry,
    }
