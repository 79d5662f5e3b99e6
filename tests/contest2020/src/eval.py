# Run from src/: python3 eval.py <image.png>
import sys

import matplotlib.image as mpimg
import numpy as np
import tensorflow as tf

model = tf.keras.models.load_model("../models/repaired.h5")
image = mpimg.imread(sys.argv[1])  # PNG: floats in 0..1 already
if image.shape[-1] == 4:
    image = image[..., :3]
pred = model.predict(np.array([image], dtype=np.float32), verbose=1)
print("Result: Class ->[%d]" % np.argmax(pred[0]))
