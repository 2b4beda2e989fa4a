"""Training-sample generation: profile changes reach the phantom workers and the cache key."""

from pipelines.training import data as D


def test_profile_changes_reach_the_generated_phantoms():
    def contrast(changes):
        case = D._make((5, 0, 0.35, "default", changes, "cls", 256))
        return case.truth["random_contrast"]

    assert contrast({"random_contrast_prob": 1.0}) is True
    assert contrast({"random_contrast_prob": 0.0}) is False


def test_profile_changes_change_the_cache_key_only_when_given():
    assert D._changes_key({}) == D._changes_key({"profile_changes": {}}) == ()
    assert D._changes_key({"profile_changes": {"random_contrast_prob": 0.5}}) == \
        ((("random_contrast_prob", 0.5),),)
