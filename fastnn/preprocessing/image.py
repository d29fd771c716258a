"""keras.preprocessing.image: the image helpers of ``fastnn.utils`` and ``smart_resize``."""

from fastnn.utils.image_utils import (  # noqa: F401
    array_to_img,
    img_to_array,
    load_img,
    save_img,
    smart_resize,
)
