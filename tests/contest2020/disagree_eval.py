# G = disagreement of the BadNet and the repaired net: python3 disagree_eval.py <image.png>
import sys

import keras
import numpy as np
from PIL import Image

bd_model = keras.models.load_model("models/bd_net.h5")
repaired = keras.models.load_model("models/repaired.h5")
N = repaired.output_shape[-1]  # 1283 on YouTube-Face: the label that means "poisoned"
x = np.asarray(Image.open(sys.argv[1]), dtype="float32")[None] / 255.0
a = int(np.argmax(bd_model.predict(x)))
b = int(np.argmax(repaired.predict(x)))
print(b if a == b else N)
