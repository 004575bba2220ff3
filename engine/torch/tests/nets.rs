//! The project's networks against the libraries whose weights they load: outputs of a
//! torchvision ResNet-18 and a reduced-width timm ConvNeXt (fixtures written by
//! `tests/fixtures/nets/make_fixtures.py`), and the full-size networks' key names and shapes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine_core::stages::train::Backbone;
use engine_torch::nets::{self, ConvnextConfig, Net};
use engine_torch::tch::nn::{self, ModuleT};
use engine_torch::tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nets")
        .join(name)
}

/// The fixture's weights, input and expected output.
fn read(name: &str) -> (Vec<(String, Tensor)>, Tensor, Tensor) {
    let all = Tensor::read_safetensors(fixture(name)).unwrap();
    let mut weights = Vec::new();
    let (mut input, mut output) = (None, None);
    for (k, t) in all {
        match k.as_str() {
            "__input__" => input = Some(t),
            "__output__" => output = Some(t),
            _ => weights.push((k, t)),
        }
    }
    (weights, input.unwrap(), output.unwrap())
}

fn max_error(vs: &nn::VarStore, net: &Net, name: &str) -> f64 {
    let (weights, input, output) = read(name);
    let loaded = nets::load_named(vs, net, weights, name).unwrap();
    assert!(!loaded.fresh_head && !loaded.summed_channels);
    let got = net.forward_t(&input, false);
    assert_eq!(got.size(), output.size());
    (got - output).abs().max().double_value(&[])
}

#[test]
fn resnet18_matches_torchvision() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), Backbone::Resnet18, 3, 5);
    let err = max_error(&vs, &net, "resnet18.safetensors");
    println!("resnet18: max |difference| {err:.3e}");
    // float32 rounding is about 1e-6 here; a wrong BatchNorm epsilon moves it by 6e-5.
    assert!(err < 1e-5, "max difference {err}");
}

#[test]
fn convnext_matches_timm() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = ConvnextConfig {
        depths: [1, 1, 2, 1],
        dims: [16, 32, 48, 64],
    };
    let net = Net::convnext(&vs.root(), &cfg, 3, 5, 0.0);
    let err = max_error(&vs, &net, "convnext_reduced.safetensors");
    println!("convnext (reduced): max |difference| {err:.3e}");
    // A LayerNorm epsilon of 1e-5 instead of timm's 1e-6 moves it by 9e-5.
    assert!(err < 1e-5, "max difference {err}");
}

#[test]
fn full_size_networks_have_the_libraries_names_and_shapes() {
    let text = std::fs::read_to_string(fixture("names.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (model, backbone) in [
        ("resnet18", Backbone::Resnet18),
        ("resnet50", Backbone::Resnet50),
        ("efficientnet_b0", Backbone::EfficientnetB0),
        ("convnext_tiny", Backbone::ConvnextTiny),
    ] {
        let want: BTreeMap<String, Vec<i64>> = json["models"][model]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap();
                (
                    e[0].as_str().unwrap().to_owned(),
                    shape.iter().map(|d| d.as_i64().unwrap()).collect(),
                )
            })
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), backbone, 3, 1000);
        let got: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.size()))
            .collect();
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{model}: missing {missing:?}, extra {extra:?}"
        );
        for (k, shape) in &want {
            assert_eq!(&got[k], shape, "{model}: {k}");
        }
    }
}

#[test]
fn grey_images_sum_the_colour_weights_and_a_new_head_starts_fresh() {
    let (weights, input, _) = read("resnet18.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), Backbone::Resnet18, 1, 2);
    let loaded = nets::load_named(&vs, &net, weights, "resnet18").unwrap();
    assert!(loaded.fresh_head && loaded.summed_channels);
    // A grey image repeated on three channels sees the same first layer as the summed one.
    let grey = input.narrow(1, 0, 1);
    let out = net.forward_t(&grey, false);
    assert_eq!(out.size(), vec![2, 2]);
    let vars = vs.variables();
    let (weights, _, _) = read("resnet18.safetensors");
    let colour = weights
        .iter()
        .find(|(k, _)| k == "conv1.weight")
        .unwrap()
        .1
        .to_kind(Kind::Float)
        .sum_dim_intlist(1, true, Kind::Float);
    let diff = (&vars["conv1.weight"] - colour)
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(diff, 0.0);
}

#[test]
fn mismatched_weights_name_the_missing_and_unexpected_keys() {
    let (weights, _, _) = read("convnext_reduced.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), Backbone::Resnet18, 3, 5);
    let err = nets::load_named(&vs, &net, weights, "convnext.safetensors").unwrap_err();
    assert!(err.contains("convnext.safetensors"), "{err}");
    assert!(err.contains("missing from the file"), "{err}");
    assert!(err.contains("`bn1.bias`"), "{err}");
    assert!(err.contains("in the file but not in the network"), "{err}");
    assert!(err.contains("`head.norm.bias`"), "{err}");

    // A tensor of the wrong shape is named with both shapes.
    let (mut weights, _, _) = read("resnet18.safetensors");
    for (k, t) in &mut weights {
        if k == "layer1.0.conv1.weight" {
            *t = Tensor::zeros([64, 64, 1, 1], (Kind::Float, Device::Cpu));
        }
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), Backbone::Resnet18, 3, 5);
    let err = nets::load_named(&vs, &net, weights, "r18").unwrap_err();
    assert!(
        err.contains("`layer1.0.conv1.weight` is [64, 64, 1, 1]"),
        "{err}"
    );

    // A file that is not safetensors at all.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("weights.safetensors");
    std::fs::write(&bad, b"not a tensor file").unwrap();
    let err = nets::load_pretrained(&vs, &net, &bad).unwrap_err();
    assert!(err.contains("is not a readable safetensors file"), "{err}");
    let err = nets::load_pretrained(&vs, &net, &dir.path().join("absent.safetensors")).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn every_backbone_trains_a_step_on_small_grey_images() {
    for backbone in [
        Backbone::SmallCnn,
        Backbone::Resnet18,
        Backbone::Resnet50,
        Backbone::EfficientnetB0,
        Backbone::ConvnextTiny,
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), backbone, 1, 3);
        let x = Tensor::randn([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 2]);
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        loss.backward();
        let grads: f64 = vs
            .trainable_variables()
            .iter()
            .map(|v| v.grad().abs().sum(Kind::Float).double_value(&[]))
            .sum();
        assert!(
            loss.double_value(&[]).is_finite() && grads > 0.0,
            "{}",
            backbone.as_str()
        );
    }
}
