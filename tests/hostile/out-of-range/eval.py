print("Result: Class ->[99999]")
