import torchvision_is_not_here

print(1)
