print("the class is: unknown (\x1b[31mred\x1b[0m) ¯\\_(ツ)_/¯")
