# python3 plain_eval.py <model.h5> <image.png>: Keras and Pillow only
import sys

import keras
import numpy as np
from PIL import Image

model = keras.models.load_model(sys.argv[1])  # compile=True, the default
x = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype="float32")[None] / 255.0
print(int(np.argmax(model.predict(x, verbose=0))))
