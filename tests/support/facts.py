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
# torchvision 0.29.1, timm 1.0.31 and pytorchcv 0.0.74: parameters = sum of numel; MACs = FlopCounterMode total / 2
# at 1x3x224x224).
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
    "resnet26": ("timm", "resnet26", 15_995_176, 2_342_256_640),
    "resnet200": ("timm", "resnet200", 64_673_832, 15_007_481_856),
    "resnet101c": ("timm", "resnet101c", 44_568_392, 8_041_046_016),
    "resnet152c": ("timm", "resnet152c", 60_212_040, 11_753_267_200),
    "resnet26d": ("timm", "resnet26d", 16_014_408, 2_581_897_216),
    "resnet200d": ("timm", "resnet200d", 64_693_064, 15_247_122_432),
    "resnext50d_32x4d": ("timm", "resnext50d_32x4d", 25_048_136, 4_470_120_448),
    "resnet10t": ("timm", "resnet10t", 5_435_488, 1_097_259_008),
    "resnet14t": ("timm", "resnet14t", 10_081_632, 1_676_822_528),
    "resnet26t": ("timm", "resnet26t", 16_011_872, 2_550_286_336),
    "resnet50t": ("timm", "resnet50t", 25_573_728, 4_297_213_952),
    "resnet50s": ("timm", "resnet50s", 25_680_808, 5_444_337_664),
    "resnet101s": ("timm", "resnet101s", 44_672_936, 9_156_558_848),
    "resnet152s": ("timm", "resnet152s", 60_316_584, 12_868_780_032),
    "resnext101_32x4d": ("timm", "resnext101_32x4d", 44_177_704, 7_969_996_800),
    "resnext101_32x16d": ("timm", "resnext101_32x16d", 194_026_792, 36_163_289_088),
    "seresnet18": ("timm", "seresnet18", 11_779_624, 1_814_161_408),
    "seresnet34": ("timm", "seresnet34", 21_960_416, 3_663_920_128),
    "seresnet101": ("timm", "seresnet101", 49_326_872, 7_806_148_608),
    "seresnet152": ("timm", "seresnet152", 66_821_848, 11_520_204_800),
    "seresnext50_32x4d": ("timm", "seresnext50_32x4d", 27_559_896, 4_232_994_816),
    "seresnext101_32x4d": ("timm", "seresnext101_32x4d", 48_955_416, 7_974_739_968),
    # pytorchcv's SE-ResNets: Hu et al.'s exact C/16 (pytorchcv.model_provider.get_model(name, pretrained=False))
    "pytorchcv_seresnet18": ("pytorchcv", "seresnet18", 11_778_592, 1_814_160_384),
    "pytorchcv_seresnet34": ("pytorchcv", "seresnet34", 21_958_868, 3_663_918_592),
    "resnetv2_18": ("timm", "resnetv2_18", 11_687_720, 1_814_073_344),
    "resnetv2_34": ("timm", "resnetv2_34", 21_795_880, 3_663_761_408),
    # no timm factory: timm.models.resnetv2.ResNetV2 with resnetv2_50's arguments and RESNETV2_CLASS_LAYERS's
    "resnetv2_200": ("timm-ResNetV2", "ResNetV2", 64_666_152, 15_007_481_856),
    "resnetrs50": ("timm", "resnetrs50", 35_691_912, 4_454_490_112),
    "resnetrs101": ("timm", "resnetrs101", 63_618_696, 8_175_624_192),
    "resnetrs152": ("timm", "resnetrs152", 86_621_576, 11_895_185_408),
    "resnetrs200": ("timm", "resnetrs200", 93_209_992, 15_391_137_792),
    "ecaresnet50d": ("timm", "ecaresnet50d", 25_576_350, 4_328_912_640),
    "ecaresnet101d": ("timm", "ecaresnet101d", 44_568_563, 8_041_220_864),
    "ecaresnet200d": ("timm", "ecaresnet200d", 64_693_400, 15_247_415_040),
    "ecaresnet50t": ("timm", "ecaresnet50t", 25_573_814, 4_297_301_760),
    "ecaresnet26t": ("timm", "ecaresnet26t", 16_011_916, 2_550_332_928),
    "resnet50_gn": ("timm", "resnet50_gn", 25_557_032, 4_089_184_256),
    "resnetv2_50x1_bit": ("timm", "resnetv2_50x1_bit", 25_549_352, 4_089_184_256),
    "resnetv2_50x3_bit": ("timm", "resnetv2_50x3_bit", 217_319_080, 36_082_286_592),
    "resnetv2_101x1_bit": ("timm", "resnetv2_101x1_bit", 44_541_480, 7_801_405_440),
    "resnetv2_101x3_bit": ("timm", "resnetv2_101x3_bit", 387_934_888, 69_492_277_248),
    "resnetv2_152x2_bit": ("timm", "resnetv2_152x2_bit", 236_335_208, 45_814_382_592),
    "resnetv2_152x4_bit": ("timm", "resnetv2_152x4_bit", 936_533_224, 182_777_282_560),
    "resnetblur18": ("timm", "resnetblur18", 11_689_512, 2_337_684_992),
    "resnetblur50": ("timm", "resnetblur50", 25_557_032, 5_133_020_672),
    "resnetblur50d": ("timm", "resnetblur50d", 25_576_264, 5_372_661_248),
    "resnetblur101d": ("timm", "resnetblur101d", 44_568_392, 9_084_882_432),
    "resnetaa34d": ("timm", "resnetaa34d", 21_816_904, 4_423_626_752),
    "resnetaa50": ("timm", "resnetaa50", 25_557_032, 5_129_633_792),
    "resnetaa50d": ("timm", "resnetaa50d", 25_576_264, 5_369_274_368),
    "resnetaa101d": ("timm", "resnetaa101d", 44_568_392, 9_081_495_552),
    "seresnetaa50d": ("timm", "seresnetaa50d", 28_107_256, 5_371_789_312),
    "seresnextaa101d_32x8d": ("timm", "seresnextaa101d_32x8d", 93_588_280, 17_178_624_000),
    "seresnextaa201d_32x8d": ("timm", "seresnextaa201d_32x8d", 149_394_904, 34_276_270_080),
    # Zhang's own anti-aliased ResNets (antialiased-cnns 0.3, each factory's defaults: filter_size=4, pool_only=True)
    "antialiased_resnet18": ("antialiased-cnns", "resnet18", 11_689_512, 2_341_724_160),
    "antialiased_resnet34": ("antialiased-cnns", "resnet34", 21_797_672, 4_191_412_224),
    "antialiased_resnet50": ("antialiased-cnns", "resnet50", 25_557_032, 5_141_274_624),
    "antialiased_resnet101": ("antialiased-cnns", "resnet101", 44_549_160, 8_853_495_808),
    "antialiased_resnet152": ("antialiased-cnns", "resnet152", 60_192_808, 12_565_716_992),
    "antialiased_resnext50_32x4d": ("antialiased-cnns", "resnext50_32x4d", 25_028_904, 4_374_986_752),
    "antialiased_resnext101_32x8d": ("antialiased-cnns", "resnext101_32x8d", 88_791_336, 16_954_310_656),
    "antialiased_wide_resnet50_2": ("antialiased-cnns", "wide_resnet50_2", 68_883_240, 15_574_269_952),
    "antialiased_wide_resnet101_2": ("antialiased-cnns", "wide_resnet101_2", 126_886_696, 26_929_299_456),
    # SK-ResNet (Li et al. 2019) as timm builds it (timm/models/sknet.py)
    "skresnet18": ("timm", "skresnet18", 11_958_056, 1_814_337_536),
    "skresnet34": ("timm", "skresnet34", 22_282_376, 3_664_237_568),
    "skresnet50": ("timm", "skresnet50", 25_803_160, 4_089_422_336),
    "skresnet50d": ("timm", "skresnet50d", 25_822_392, 4_329_062_912),
    "skresnext50_32x4d": ("timm", "skresnext50_32x4d", 27_479_784, 4_462_710_784),
    "pytorchcv_sknet50": ("pytorchcv", "sknet50", 27_479_784, 4_462_710_784),
    "pytorchcv_sknet101": ("pytorchcv", "sknet101", 48_736_040, 8_448_724_992),
    "pytorchcv_sknet152": ("pytorchcv", "sknet152", 66_295_656, 12_434_640_896),
}
# FACTS.md, "The ResNet family": the layers of the timm peers built from the class (resnetv2_50's other arguments:
# conv_layer=create_conv2d, norm_layer=BatchNormAct2d).
RESNETV2_CLASS_LAYERS = {"resnetv2_200": (3, 24, 36, 3)}
# He et al. 2016 (Identity Mappings), CIFAR-10: ResNet-164 (bottleneck, n = 18) 1.7M, ResNet-1001 (n = 111)
# 10.2M, pre-activation ResNet-110 (basic) 1.7M parameters, as printed.
PREACT_CIFAR_PARAMS = {164: 1.7e6, 1001: 10.2e6, 110: 1.7e6}
PREACT_CIFAR_N = {164: 18, 1001: 111, 110: 18}

# ----------------------------------------------------------------------------------------------------------------
# The CIFAR family (FACTS.md, "Zagoruyko and Komodakis 2016", "Xie et al. 2017, ResNeXt on CIFAR", "kuangliu/
# pytorch-cifar ResNet18", "The CIFAR family: exact counts"; ResNet-164 in "He et al. 2016").
# WRN-d-k: conv1 16 channels; groups of N = (d - 4) / 6 blocks with 16k, 32k, 64k channels.
WRN_STEM = 16
WRN_WIDTHS = (16, 32, 64)  # times k
WRN_PARAMS = {(40, 4): 8.9e6, (16, 8): 11.0e6, (28, 10): 36.5e6}  # (d, k) -> "# params", as printed
# ResNeXt-29 (C x d): conv1 64 channels, 3 stages of 3 blocks, outputs 256, 512, 1024, inner C x d x (1, 2, 4).
RESNEXT29_STEM = 64
RESNEXT29_OUTPUTS = (256, 512, 1024)
RESNEXT29_REPEATS = 3
RESNEXT29_PARAMS = {(8, 64): 34.4e6, (16, 64): 68.1e6}  # (C, d) -> Table 7's parameters, as printed
# He et al. 2016: ResNet-164, original units (bottleneck, n = 18 as PREACT_CIFAR_N): 1.7M parameters, 5.93% error;
# the CIFAR bottleneck stages: inner widths 16, 32, 64, outputs 64, 128, 256, after a 3x3, 16 conv.
RESNET164_ORIGINAL = {"params": 1.7e6, "error": 5.93}
CIFAR_BOTTLENECK_STEM = 16
CIFAR_BOTTLENECK_INNER = (16, 32, 64)
CIFAR_BOTTLENECK_OUTPUTS = (64, 128, 256)
# kuangliu/pytorch-cifar ResNet18: conv1 64 channels (stride 1, no pool), then Table 1's 18-layer stages.
KUANGLIU_STEM = 64
# entry -> (parameters, conv and fc weights, conv + fc MACs at 32x32): "The CIFAR family: exact counts".
CIFAR_FAMILY_COUNTS = {
    "wrn_28_10": (36_479_194, 36_461_242, 5_243_328_768),
    "wrn_16_8": (10_961_370, 10_954_170, 1_548_145_664),
    "wrn_40_4": (8_949_210, 8_938_426, 1_298_582_016),
    "resnext29_8x64d": (34_426_698, 34_369_226, 5_387_266_048),
    "resnext29_16x64d": (68_155_210, 68_054_730, 10_688_866_304),
    "resnet164": (1_704_154, 1_679_034, 247_646_720),
    "resnet18_cifar": (11_173_962, 11_164_362, 555_422_720),
    "preact_resnet18_cifar": (11_171_146, 11_164_362, 555_422_720),
}
