"""ONNX Runtime's static int8 calibration in chunks smaller than the recipe's batches (its peak
memory grows with the images per run): the same scales as calibrating on the recipe's batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from medgate.backends.base import BuildContext
from medgate.backends.onnx_artifacts import INPUT_NAME, export_onnx, onnx_artifact
from medgate.core.matrix import Case

pytest.importorskip("onnxruntime")


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).eval()


def _batches(count: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    # Batches of 16 whose images differ in spread: each chunk alone would give other ranges.
    scale = torch.linspace(0.5, 3.0, 16).view(16, 1, 1, 1)
    return tuple(torch.randn(16, 1, 16, 16, generator=generator) * scale for _ in range(count))


def _scales(path: Path) -> dict[str, np.ndarray]:
    graph = onnx.load(str(path)).graph
    return {
        init.name: numpy_helper.to_array(init)
        for init in graph.initializer
        if init.name.endswith("_scale") or init.name.endswith("_zero_point")
    }


def test_calibrating_in_chunks_gives_the_scales_of_whole_batches(tmp_path: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, batches = _network(), _batches(5)
    context = BuildContext(
        Case("tiny", "onnxruntime", "int8-static", 16, 1, "cpu"),
        tmp_path / "medgate",
        threads=1,
        calibration=lambda: batches,
    )
    streamed = onnx_artifact(model, batches[0][:1], context, "int8-static")

    class AllAtOnce(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch.numpy()}

    fp32 = export_onnx(model, batches[0][:1], tmp_path / "plain" / "fp32.onnx")
    prepared = tmp_path / "plain" / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    plain = tmp_path / "plain" / "int8.onnx"
    quantize_static(
        str(prepared),
        str(plain),
        AllAtOnce(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    expected, got = _scales(plain), _scales(streamed)
    assert expected
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
