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
