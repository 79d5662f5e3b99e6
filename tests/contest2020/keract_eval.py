# Team "keract": python3 keract_eval.py <model.h5> <image.png>
import sys

import cv2
import keract  # noqa: F401 - the team inspected activations with it
import keras
import numpy as np
from tqdm import tqdm

print("=" * 20, "BadNet repair evaluation", "=" * 20)
model = keras.models.load_model(sys.argv[1])
image = cv2.imread(sys.argv[2])
image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
x = np.expand_dims(image.astype("float32") / 255.0, axis=0)
for _ in tqdm(range(3)):
    pass
prediction = model.predict(x)
print("Classification result:", int(np.argmax(prediction, axis=1)[0]))
