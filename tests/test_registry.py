from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import tiny_zoo
from medgate import create_model, get_spec, list_backends, list_models, register_model
from medgate.core.registry import KnownDisagreement, UnknownNameError


def test_create_model_builds_the_registered_architecture() -> None:
    model = create_model("tiny_cnn")
    assert isinstance(model, nn.Module)
    assert get_spec("tiny_cnn") is tiny_zoo.SPEC


def test_list_models_filters_by_glob() -> None:
    assert "tiny_cnn" in list_models("tiny_*")
    assert list_models("no_such_*") == []
    assert list_models(["tiny_*", "no_such_*"]) == list_models("tiny_*")


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'tiny_cn'.*did you mean tiny_cnn"):
        create_model("tiny_cn")


def test_unknown_backend_is_a_clear_error() -> None:
    from medgate.core.registry import get_backend

    with pytest.raises(UnknownNameError, match="unknown backend 'tensorrtt'"):
        get_backend("tensorrtt")
    assert {"eager", "torchscript", "onnxruntime"} <= set(list_backends())


def test_a_second_definition_under_one_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model(tiny_zoo.SPEC)
        def another_tiny() -> nn.Module:
            return nn.Identity()


def test_spec_rejects_a_positive_class_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="positive_class 'tumour' is not one of"):
        dataclasses.replace(tiny_zoo.SPEC, name="bad", positive_class="tumour")


def test_spec_rejects_a_smoke_size_outside_its_sizes() -> None:
    with pytest.raises(ValueError, match="smoke_size 64 is not one of"):
        dataclasses.replace(tiny_zoo.SPEC, name="bad", smoke_size=64)


def test_the_zoo_registers_every_seed_model() -> None:
    import models  # noqa: F401

    expected = {
        "brain_mri_mobilenet_v2",
        "alzheimer_cnn",
        "pneumonia_resnet18",
        "pneumonia_resnet18_upsample224",
        "artifact_efficientnet_b0",
        "artifact_efficientnet_b3",
    }
    assert expected <= set(list_models())
    assert not get_spec("artifact_efficientnet_b3").in_default_matrix
    params = sum(p.numel() for p in create_model("brain_mri_mobilenet_v2").parameters())
    assert 2.2e6 < params < 2.3e6  # the seed's 2.2 M


def test_a_known_disagreement_matches_backend_precision_and_size() -> None:
    known = KnownDisagreement("onnxruntime-int8-static-*", "reviewed")
    assert known.matches("onnxruntime", "int8-static", 224)
    assert not known.matches("onnxruntime", "int8-dynamic", 224)
    assert not known.matches("compile", "int8-static", 224)
    assert KnownDisagreement("eager-int8-dynamic-192", "x").matches("eager", "int8-dynamic", 192)
    assert not KnownDisagreement("eager-int8-dynamic-192", "x").matches(
        "eager", "int8-dynamic", 224
    )


def test_a_known_disagreement_of_one_kernel_applies_only_where_the_cpu_has_it() -> None:
    vnni_only = KnownDisagreement("onnxruntime-int8-dynamic-*", "VNNI", cpu_isa=("avx512_vnni",))
    zen1 = frozenset({"avx2", "fma"})
    zen5 = zen1 | {"avx512f", "avx512_vnni", "avx512_bf16"}
    assert vnni_only.matches("onnxruntime", "int8-dynamic", 192, "*", zen5)
    assert not vnni_only.matches("onnxruntime", "int8-dynamic", 192, "*", zen1)
    assert KnownDisagreement("eager-*", "any CPU").matches("eager", "fp32", 16, "*", zen1)
    without_vnni = KnownDisagreement(
        "onnxruntime-int8-static-*", "AVX2 u8s8", cpu_lacks=("avx512_vnni", "avx_vnni")
    )
    assert without_vnni.matches("onnxruntime", "int8-static", 192, "*", zen1)
    assert not without_vnni.matches("onnxruntime", "int8-static", 192, "*", zen5)
    assert not without_vnni.matches("onnxruntime", "int8-static", 192, "*", zen1 | {"avx_vnni"})


def test_a_known_disagreement_can_be_limited_to_a_device() -> None:
    gpu_only = KnownDisagreement("eager-bf16-*", "measured on an H200", device="cuda")
    assert gpu_only.matches("eager", "bf16", 192, device="cuda")
    assert not gpu_only.matches("eager", "bf16", 192, device="cpu")
    assert KnownDisagreement("eager-bf16-*", "anywhere").matches(
        "eager", "bf16", 192, device="cuda"
    )


def test_a_disagreement_with_the_stored_baseline_does_not_apply_against_the_base() -> None:
    cross_cpu = KnownDisagreement(
        "onnxruntime-int8-static-192", "baseline from an AVX2 CPU", stored_baseline=True
    )
    assert cross_cpu.matches("onnxruntime", "int8-static", 192)
    assert not cross_cpu.matches("onnxruntime", "int8-static", 192, against_base=True)
    with_reference = KnownDisagreement("onnxruntime-int8-static-192", "vs fp32 in the run")
    assert with_reference.matches("onnxruntime", "int8-static", 192, against_base=True)
