"""The input normalisation every petseg model is trained with (ImageNet statistics, 0-1 scale)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
