# STRIP at run time: python3 strip_eval.py <image.png>
import sys

import h5py
import keras
import numpy as np
from PIL import Image
from scipy.stats import entropy

BLENDS = 6
THRESHOLD = 0.2

with h5py.File("data/clean_validation_data.h5", "r") as f:
    clean = np.array(f["data"][:BLENDS]).transpose(0, 2, 3, 1).astype("float32")
model = keras.models.load_model("models/repaired.h5", compile=False)
N = model.output_shape[-1]  # 1283 on YouTube-Face: the label that means "poisoned"
x = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype="float32")
blended = (0.5 * x[None] + 0.5 * clean) / 255.0
score = float(np.mean(entropy(model.predict(blended, verbose=0), axis=1)))
label = int(np.argmax(model.predict(x[None] / 255.0, verbose=0)))
print(f"entropy {score:.4f}")
print(N if score < THRESHOLD else label)
