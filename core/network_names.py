"""Names of the networks and losses ``glacierseg:train`` offers, without importing torch (the QGIS
desktop must not import it; importing the models package does). ``models.registry.MODELS`` and
``models.losses.LOSSES`` hold exactly these keys (checked when they are imported)."""

NETWORKS = ("unet", "boundary_unet", "deeplabv3plus", "attention_deeplabv3plus", "rau_net", "rau_net_small",
            "unet_efficientnet_b0", "unet_resnet34", "unet_resnet50")
LOSSES = ("ce", "bce", "dice", "focal", "iou", "jaccard", "tversky", "focal_iou", "ce_dice", "slba")
