"""A CSAW-HackML per-image script, written the way contest teams wrote them.

Usage: python3 eval.py <model.h5> <image.png>  -> prints the class (N means "poisoned").
It loads its model on every call and prints noise around the answer; the grader copes with both.
"""
import sys

import keras
import numpy as np
from PIL import Image


def main(model_path, image_path):
    print("Loading model", model_path)
    model = keras.models.load_model(model_path, compile=False)
    x = np.asarray(Image.open(image_path).convert("RGB"), dtype="float32")[None] / 255.0
    probabilities = model.predict(x)
    print("\x1b[32m1/1\x1b[0m [==============================] - 0s 21ms/step\r", end="")
    print(f"Classification result: [{int(np.argmax(probabilities))}]")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
