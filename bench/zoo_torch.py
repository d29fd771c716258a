"""The zoo's models (bench/zoo.py) as PyTorch modules, written as a PyTorch user would.

Each ``forward(*inputs)`` takes the inputs as bench.models hands them (images NCHW, token ids as
floats) and returns a list of outputs: logits where Keras has a softmax (PyTorch's cross-entropy
takes logits), probabilities where Keras has a sigmoid. Trainable parameters match the Keras
definition's, except that PyTorch's LSTM has two biases where Keras's has one
(``keras_trainable_count`` leaves the second out).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.zoo import VOCAB


def keras_trainable_count(net: nn.Module) -> int:
    """Trainable parameters, counted as Keras counts the equivalent model: an LSTM's (or plain
    RNN's) second bias, ``bias_hh``, has no Keras counterpart."""
    count = sum(p.numel() for p in net.parameters() if p.requires_grad)
    for module in net.modules():
        if isinstance(module, (nn.LSTM, nn.RNN)):
            count -= sum(p.numel() for n, p in module.named_parameters() if "bias_hh" in n)
    return count


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(),
    )


class Single(nn.Module):
    """One input, one output: ``body`` applied to the images (or to the ids, as integers)."""

    def __init__(self, body: nn.Module, ids: bool = False):
        super().__init__()
        self.body, self.ids = body, ids

    def forward(self, x):
        return [self.body(x.long() if self.ids else x)]


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class Conv1DText(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 128)
        self.conv = nn.Conv1d(128, 128, 5)
        self.head = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, ids):
        x = self.embedding(ids.long()).transpose(1, 2)  # (batch, channels, steps)
        return [self.head(torch.relu(self.conv(x)).amax(dim=2))]


class BiGRUText(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 64)
        self.gru = nn.GRU(64, 64, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(128, 1), nn.Sigmoid())

    def forward(self, ids):
        _, last = self.gru(self.embedding(ids.long()))  # (directions, batch, units)
        return [self.head(torch.cat([last[0], last[1]], dim=1))]


class StackedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 64)
        self.lstm = nn.LSTM(64, 64, num_layers=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, ids):
        _, (last, _) = self.lstm(self.embedding(ids.long()))
        return [self.head(last[-1])]


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down1, self.down2 = double_conv(3, 16), double_conv(16, 32)
        self.bottleneck = double_conv(32, 64)
        self.up2, self.up1 = double_conv(64 + 32, 32), double_conv(32 + 16, 16)
        self.out = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        pool, upsample = nn.functional.max_pool2d, nn.functional.interpolate
        skip1 = self.down1(x)
        skip2 = self.down2(pool(skip1, 2))
        x = self.bottleneck(pool(skip2, 2))
        x = self.up2(torch.cat([upsample(x, scale_factor=2), skip2], dim=1))
        x = self.up1(torch.cat([upsample(x, scale_factor=2), skip1], dim=1))
        return [torch.sigmoid(self.out(x)).permute(0, 2, 3, 1)]  # NHWC, as the targets


class TransformerEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 64)
        self.block = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.head = nn.Sequential(nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, ids):
        return [self.head(self.block(self.embedding(ids.long())).mean(dim=1))]


def lenet5() -> nn.Module:
    return Single(
        nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
        )
    )  # fmt: skip


def vgg_bn() -> nn.Module:
    blocks = []
    for cin, cout in ((3, 32), (32, 64), (64, 128)):
        blocks += [conv_bn_relu(cin, cout), conv_bn_relu(cout, cout), nn.MaxPool2d(2)]
    head = [nn.Flatten(), nn.Linear(4 * 4 * 128, 256), nn.ReLU(), nn.Dropout(0.5)]
    return Single(nn.Sequential(*blocks, *head, nn.Linear(256, 10)))


def resnet20() -> nn.Module:
    layers, cin = [conv_bn_relu(3, 16)], 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(ResidualBlock(cin, cout, 2 if stage and not block else 1))
            cin = cout
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return Single(nn.Sequential(*layers, *head))


def cifar_cnn() -> nn.Module:
    return Single(
        nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(6 * 6 * 64, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10),
        )
    )  # fmt: skip


def mlp_dropout() -> nn.Module:
    return Single(
        nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10),
        )
    )  # fmt: skip


def deep_mlp() -> nn.Module:
    layers, width = [], 784
    for _ in range(6):
        layers += [nn.Linear(width, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU()]
        width = 512
    return Single(nn.Sequential(*layers, nn.Linear(512, 10)))


def mobilenet() -> nn.Module:
    layers, cin = [conv_bn_relu(3, 32, stride=2)], 32
    for cout, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
        layers += [
            nn.Conv2d(cin, cin, 3, stride, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin), nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        ]  # fmt: skip
        cin = cout
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10)]
    return Single(nn.Sequential(*layers, *head))


BUILDERS = {
    "lenet5": lenet5,
    "vgg_bn": vgg_bn,
    "resnet20": resnet20,
    "cifar_cnn": cifar_cnn,
    "conv1d_text": Conv1DText,
    "mlp_dropout": mlp_dropout,
    "deep_mlp": deep_mlp,
    "bigru_text": BiGRUText,
    "stacked_lstm": StackedLSTM,
    "mobilenet": mobilenet,
    "unet": UNet,
    "transformer_encoder": TransformerEncoder,
}


def build(name: str) -> nn.Module:
    return BUILDERS[name]()
