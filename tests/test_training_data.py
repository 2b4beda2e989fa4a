"""Training-sample generation: profile changes reach the phantom workers and the cache key."""

from pipelines.training import data as D


def test_profile_changes_reach_the_generated_phantoms():
    def contrast(changes):
        case = D._make((5, 0, 0.35, "default", changes, "cls", 256))
        return case.truth["random_contrast"]

    assert contrast({"random_contrast_prob": 1.0}) is True
    assert contrast({"random_contrast_prob": 0.0}) is False


def test_profile_changes_are_an_order_free_part_of_the_cache_key():
    assert D._changes_key({}) == D._changes_key({"profile_changes": {}}) == ()
    assert D._changes_key({"profile_changes": {"random_contrast_prob": 0.5, "snr": (4, 9)}}) == \
        D._changes_key({"profile_changes": {"snr": (4, 9), "random_contrast_prob": 0.5}}) == \
        (("random_contrast_prob", 0.5), ("snr", (4, 9)))
