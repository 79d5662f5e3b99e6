# python3 helper_predict.py <image.png>
import sys

import numpy as np
from PIL import Image
from tensorflow import keras

MODEL = "models/repaired.h5"


def data_loader(path):
    x = np.array(Image.open(path).convert("RGB"), dtype="float32")
    return x[np.newaxis] / 255.0


def predict(model, data):
    """Not a batch entry point: a helper that takes a model and preprocessed data."""
    return np.argmax(model.predict(data), axis=1)


if __name__ == "__main__":
    net = keras.models.load_model(MODEL)
    label = predict(net, data_loader(sys.argv[1]))
    print("[%d]" % label[0])
