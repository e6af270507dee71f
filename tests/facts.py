"""Figures transcribed from FACTS.md beside this file (the papers and the exact counts), for tests to check against.

Nothing here is computed by resnet_spec: every number is copied from FACTS.md, with its source.
"""

# He et al. 2015, Table 1: block kind and repeats of conv2_x..conv5_x per depth.
TABLE1_BLOCK = {18: "basic", 34: "basic", 50: "bottleneck", 101: "bottleneck", 152: "bottleneck"}
TABLE1_REPEATS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Table 1: the filters of each stage's bracket, first conv .. last conv.
TABLE1_BASIC_WIDTHS = ((64, 64), (128, 128), (256, 256), (512, 512))
TABLE1_BOTTLENECK_WIDTHS = ((64, 64, 256), (128, 128, 512), (256, 256, 1024), (512, 512, 2048))
# Table 1, "output size" column at 224x224.
TABLE1_OUTPUT = {"conv1": 112, "conv2_x": 56, "conv3_x": 28, "conv4_x": 14, "conv5_x": 7}
# Table 1, FLOPs row (multiply-adds), as printed.
TABLE1_FLOPS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}

# "Exact counts (1000 classes, option B, 224x224, batch 1; conv and fc multiply-adds only)".
PARAMS_B = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
MACS_V1 = {18: 1_814_073_344, 34: 3_663_761_408, 50: 3_857_973_248, 101: 7_570_194_432, 152: 11_282_415_616}
MACS_V15 = {18: 1_814_073_344, 34: 3_663_761_408, 50: 4_089_184_256, 101: 7_801_405_440, 152: 11_513_626_624}

# CIFAR-10, Sec. 4.2 and Table 6: n -> depth 6n+2.
CIFAR_N = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_OUTPUT = {"conv1": 32, "conv2_x": 32, "conv3_x": 16, "conv4_x": 8}
CIFAR_TABLE6_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}
CIFAR_PARAMS_A = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
CIFAR_MACS = {20: 40_551_040, 32: 68_862_592, 44: 97_174_144, 56: 125_485_696, 110: 252_887_680, 1202: 2_829_238_912}

# "The ResNet family": exact counts of the peers (FACTS.md, measured on randomly initialised models of
# torchvision 0.29.1 and timm 1.0.31: parameters = sum of numel; MACs = FlopCounterMode total / 2 at 1x3x224x224).
# peer -> (library, constructor, parameters, MACs at 224).
FAMILY_PEERS = {
    "wide_resnet50_2": ("torchvision", "wide_resnet50_2", 68_883_240, 11_398_021_120),
    "wide_resnet101_2": ("torchvision", "wide_resnet101_2", 126_886_696, 22_753_050_624),
    "resnext50_32x4d": ("torchvision", "resnext50_32x4d", 25_028_904, 4_230_479_872),
    "resnext101_32x8d": ("torchvision", "resnext101_32x8d", 88_791_336, 16_414_015_488),
    "resnext101_64x4d": ("torchvision", "resnext101_64x4d", 83_455_272, 15_460_270_080),
    "resnet18d": ("timm", "resnet18d", 11_708_744, 2_053_713_920),
    "resnet34d": ("timm", "resnet34d", 21_816_904, 3_903_401_984),
    "resnet50c": ("timm", "resnet50c", 25_576_264, 4_328_824_832),
    "resnet50d": ("timm", "resnet50d", 25_576_264, 4_328_824_832),
    "resnet101d": ("timm", "resnet101d", 44_568_392, 8_041_046_016),
    "resnet152d": ("timm", "resnet152d", 60_212_040, 11_753_267_200),
    "seresnet50": ("timm", "seresnet50", 28_088_024, 4_091_699_200),
    "resnetv2_50": ("timm", "resnetv2_50", 25_549_352, 4_089_184_256),
}
# He et al. 2016 (Identity Mappings), CIFAR-10: ResNet-164 (bottleneck, n = 18) 1.7M, ResNet-1001 (n = 111)
# 10.2M, pre-activation ResNet-110 (basic) 1.7M parameters, as printed.
PREACT_CIFAR_PARAMS = {164: 1.7e6, 1001: 10.2e6, 110: 1.7e6}
PREACT_CIFAR_N = {164: 18, 1001: 111, 110: 18}
