hog = bytearray(64 << 30)
print(0)
