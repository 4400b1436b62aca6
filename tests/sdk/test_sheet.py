"""Contact sheets: labels OpenCV's fonts can draw, whatever the camera is called."""

from sen_infer.cli.sheet import ascii_label


def test_accented_names_keep_their_letters_and_other_scripts_are_marked():
    assert ascii_label("ünïcode cam 1.avi") == "unicode cam 1.avi"
    assert ascii_label("Café Straße") == "Cafe Stra?e"  # ß has no ASCII decomposition
    assert ascii_label("カメラ 2") == "??? 2"
    assert ascii_label("cam\u202e1") == "cam?1"  # a bidi control is not drawn as itself
