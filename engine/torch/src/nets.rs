//! The networks `classifier.train` builds, written in the project with the key names of the
//! libraries whose pretrained weights they load: torchvision for ResNet and EfficientNet,
//! timm for ConvNeXt. Every network exposes its pooled features, so that heads beyond the
//! classifier (the adversarial attribute head) can sit on them.

use std::collections::BTreeMap;
use std::path::Path;

use engine_core::stages::train::Backbone;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// A classifier: a backbone, global average pooling, and a linear head.
#[derive(Debug)]
pub struct Net {
    body: Body,
    /// ConvNeXt's `head.norm`, applied to the pooled features.
    head_norm: Option<nn::LayerNorm>,
    head: nn::Linear,
    head_prefix: &'static str,
    dropout: f64,
    features: i64,
    first_conv: &'static str,
}

#[derive(Debug)]
enum Body {
    Small(Vec<(nn::Conv2D, nn::BatchNorm)>),
    Resnet(Box<Resnet>),
    Effnet(Box<Effnet>),
    Convnext(Box<Convnext>),
}

impl Net {
    /// The network `backbone` for `channels`-channel images with `outputs` logits.
    pub fn new(vs: &nn::Path<'_>, backbone: Backbone, channels: i64, outputs: i64) -> Net {
        match backbone {
            Backbone::SmallCnn => {
                let mut layers = Vec::new();
                let mut c_in = channels;
                for (i, c_out) in [32i64, 64, 128, 256].into_iter().enumerate() {
                    let conv = nn::ConvConfig {
                        padding: 1,
                        bias: false,
                        ..Default::default()
                    };
                    layers.push((
                        nn::conv2d(vs / format!("conv{i}"), c_in, c_out, 3, conv),
                        nn::batch_norm2d(vs / format!("bn{i}"), c_out, Default::default()),
                    ));
                    c_in = c_out;
                }
                Net::with_head(vs, Body::Small(layers), c_in, outputs, "head", 0.2, "conv0")
            }
            Backbone::Resnet18 | Backbone::Resnet50 => {
                let r = if backbone == Backbone::Resnet18 {
                    Resnet::new(vs, channels, &[2, 2, 2, 2], false)
                } else {
                    Resnet::new(vs, channels, &[3, 4, 6, 3], true)
                };
                let f = r.features;
                Net::with_head(
                    vs,
                    Body::Resnet(Box::new(r)),
                    f,
                    outputs,
                    "fc",
                    0.0,
                    "conv1",
                )
            }
            Backbone::EfficientnetB0 => {
                let e = Effnet::b0(vs, channels);
                let f = e.features;
                Net::with_head(
                    vs,
                    Body::Effnet(Box::new(e)),
                    f,
                    outputs,
                    "classifier.1",
                    0.2,
                    "features.0.0",
                )
            }
            Backbone::ConvnextTiny => {
                Net::convnext(vs, &ConvnextConfig::TINY, channels, outputs, 0.1)
            }
        }
    }

    /// A ConvNeXt of the given widths and depths (timm's layout), with stochastic depth up to
    /// `drop_path` in the last block.
    pub fn convnext(
        vs: &nn::Path<'_>,
        config: &ConvnextConfig,
        channels: i64,
        outputs: i64,
        drop_path: f64,
    ) -> Net {
        let c = Convnext::new(vs, config, channels, drop_path);
        let f = c.features;
        let mut net = Net::with_head(
            vs,
            Body::Convnext(Box::new(c)),
            f,
            outputs,
            "head.fc",
            0.0,
            "stem.0",
        );
        net.head_norm = Some(layer_norm(&(vs / "head" / "norm"), f));
        net
    }

    fn with_head(
        vs: &nn::Path<'_>,
        body: Body,
        features: i64,
        outputs: i64,
        head_prefix: &'static str,
        dropout: f64,
        first_conv: &'static str,
    ) -> Net {
        let mut path = vs.clone();
        for part in head_prefix.split('.') {
            path = &path / part;
        }
        Net {
            body,
            head_norm: None,
            head: nn::linear(path, features, outputs, Default::default()),
            head_prefix,
            dropout,
            features,
            first_conv,
        }
    }

    /// Width of the pooled features.
    pub fn features(&self) -> i64 {
        self.features
    }

    /// The key prefix of the classification head (`fc`, `head.fc`, `classifier.1`, `head`).
    pub fn head_prefix(&self) -> &'static str {
        self.head_prefix
    }

    /// Pooled features, `N x features`.
    pub fn pooled(&self, x: &Tensor, train: bool) -> Tensor {
        self.pool(&self.feature_map(x, train))
    }

    /// Pooled features from a feature map.
    pub fn pool(&self, map: &Tensor) -> Tensor {
        let pooled = map.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        match &self.head_norm {
            Some(norm) => pooled.apply(norm),
            None => pooled,
        }
    }

    /// The backbone's last feature map, `N x features x H x W` (a 32nd of the input's size
    /// for the torchvision and timm networks, a 16th for `small_cnn`).
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.body {
            Body::Small(layers) => {
                let mut x = x.shallow_clone();
                for (conv, bn) in layers {
                    x = x
                        .apply(conv)
                        .apply_t(bn, train)
                        .relu()
                        .max_pool2d_default(2);
                }
                x
            }
            Body::Resnet(r) => r.forward_t(x, train),
            Body::Effnet(e) => e.forward_t(x, train),
            Body::Convnext(c) => c.forward_t(x, train),
        }
    }

    /// Logits from pooled features.
    pub fn logits(&self, pooled: &Tensor, train: bool) -> Tensor {
        pooled.dropout(self.dropout, train).apply(&self.head)
    }
}

impl ModuleT for Net {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.logits(&self.pooled(x, train), train)
    }
}

fn conv(vs: nn::Path<'_>, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> nn::Conv2D {
    nn::conv2d(
        vs,
        c_in,
        c_out,
        k,
        nn::ConvConfig {
            stride,
            padding: (k - 1) / 2,
            groups,
            bias: false,
            ..Default::default()
        },
    )
}

fn bn(vs: nn::Path<'_>, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(vs, c, Default::default())
}

/// Zeroes whole samples of a residual branch with probability `p` during training, scaling
/// the rest (stochastic depth).
fn drop_path(x: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    let mask = Tensor::empty([x.size()[0], 1, 1, 1], (Kind::Float, x.device()))
        .bernoulli_float_(keep)
        .to_kind(x.kind());
    x * mask / keep
}

// ---------------------------------------------------------------------------------------------
// ResNet (torchvision v1.5: the stride of a bottleneck block sits in its 3x3 convolution).

#[derive(Debug)]
struct Resnet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<ResBlock>,
    features: i64,
}

#[derive(Debug)]
struct ResBlock {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Resnet {
    fn new(vs: &nn::Path<'_>, channels: i64, depths: &[usize; 4], bottleneck: bool) -> Resnet {
        let conv1 = nn::conv2d(
            vs / "conv1",
            channels,
            64,
            7,
            nn::ConvConfig {
                stride: 2,
                padding: 3,
                bias: false,
                ..Default::default()
            },
        );
        let bn1 = bn(vs / "bn1", 64);
        let expansion = if bottleneck { 4 } else { 1 };
        let mut c_in = 64;
        let mut blocks = Vec::new();
        for (l, (&depth, width)) in depths.iter().zip([64i64, 128, 256, 512]).enumerate() {
            let layer = vs / format!("layer{}", l + 1);
            for b in 0..depth {
                let p = &layer / b;
                let stride = if l > 0 && b == 0 { 2 } else { 1 };
                let c_out = width * expansion;
                let convs = if bottleneck {
                    vec![
                        (
                            conv(&p / "conv1", c_in, width, 1, 1, 1),
                            bn(&p / "bn1", width),
                        ),
                        (
                            conv(&p / "conv2", width, width, 3, stride, 1),
                            bn(&p / "bn2", width),
                        ),
                        (
                            conv(&p / "conv3", width, c_out, 1, 1, 1),
                            bn(&p / "bn3", c_out),
                        ),
                    ]
                } else {
                    vec![
                        (
                            conv(&p / "conv1", c_in, width, 3, stride, 1),
                            bn(&p / "bn1", width),
                        ),
                        (
                            conv(&p / "conv2", width, width, 3, 1, 1),
                            bn(&p / "bn2", width),
                        ),
                    ]
                };
                let downsample = (stride != 1 || c_in != c_out).then(|| {
                    let d = &p / "downsample";
                    (conv(&d / 0, c_in, c_out, 1, stride, 1), bn(&d / 1, c_out))
                });
                blocks.push(ResBlock { convs, downsample });
                c_in = c_out;
            }
        }
        Resnet {
            conv1,
            bn1,
            blocks,
            features: c_in,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in &self.blocks {
            let mut y = x.shallow_clone();
            let last = block.convs.len() - 1;
            for (i, (c, b)) in block.convs.iter().enumerate() {
                y = y.apply(c).apply_t(b, train);
                if i < last {
                    y = y.relu();
                }
            }
            let shortcut = match &block.downsample {
                Some((c, b)) => x.apply(c).apply_t(b, train),
                None => x,
            };
            x = (y + shortcut).relu();
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// EfficientNet-B0 (torchvision's layout: symmetric padding, SiLU, squeeze-excitation on a
// quarter of the block's input width, stochastic depth rising to 0.2).

#[derive(Debug)]
struct Effnet {
    stem: (nn::Conv2D, nn::BatchNorm),
    blocks: Vec<MbConv>,
    last: (nn::Conv2D, nn::BatchNorm),
    features: i64,
}

#[derive(Debug)]
struct MbConv {
    expand: Option<(nn::Conv2D, nn::BatchNorm)>,
    depthwise: (nn::Conv2D, nn::BatchNorm),
    se: (nn::Conv2D, nn::Conv2D),
    project: (nn::Conv2D, nn::BatchNorm),
    residual: bool,
    drop: f64,
}

impl Effnet {
    fn b0(vs: &nn::Path<'_>, channels: i64) -> Effnet {
        // (expansion, kernel, stride, input, output, blocks)
        const STAGES: [(i64, i64, i64, i64, i64, usize); 7] = [
            (1, 3, 1, 32, 16, 1),
            (6, 3, 2, 16, 24, 2),
            (6, 5, 2, 24, 40, 2),
            (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3),
            (6, 5, 2, 112, 192, 4),
            (6, 3, 1, 192, 320, 1),
        ];
        let f = vs / "features";
        let stem = (conv(&f / 0 / 0, channels, 32, 3, 2, 1), bn(&f / 0 / 1, 32));
        let total: usize = STAGES.iter().map(|s| s.5).sum();
        let mut blocks = Vec::new();
        for (s, &(expand, k, stride, c_in, c_out, n)) in STAGES.iter().enumerate() {
            for b in 0..n {
                let p = &f / (s + 1) / b / "block";
                let input = if b == 0 { c_in } else { c_out };
                let stride = if b == 0 { stride } else { 1 };
                let hidden = input * expand;
                let mut at = 0;
                let expand_layer = (expand != 1).then(|| {
                    at = 1;
                    (
                        conv(&p / 0 / 0, input, hidden, 1, 1, 1),
                        bn(&p / 0 / 1, hidden),
                    )
                });
                let depthwise = (
                    conv(&p / at / 0, hidden, hidden, k, stride, hidden),
                    bn(&p / at / 1, hidden),
                );
                let squeeze = (input / 4).max(1);
                let se_path = &p / (at + 1);
                let se = (
                    nn::conv2d(&se_path / "fc1", hidden, squeeze, 1, Default::default()),
                    nn::conv2d(&se_path / "fc2", squeeze, hidden, 1, Default::default()),
                );
                let project = (
                    conv(&p / (at + 2) / 0, hidden, c_out, 1, 1, 1),
                    bn(&p / (at + 2) / 1, c_out),
                );
                let drop = 0.2 * blocks.len() as f64 / total as f64;
                blocks.push(MbConv {
                    expand: expand_layer,
                    depthwise,
                    se,
                    project,
                    residual: stride == 1 && input == c_out,
                    drop,
                });
            }
        }
        let last = (conv(&f / 8 / 0, 320, 1280, 1, 1, 1), bn(&f / 8 / 1, 1280));
        Effnet {
            stem,
            blocks,
            last,
            features: 1280,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.apply(&self.stem.0).apply_t(&self.stem.1, train).silu();
        for b in &self.blocks {
            let mut y = x.shallow_clone();
            if let Some((c, n)) = &b.expand {
                y = y.apply(c).apply_t(n, train).silu();
            }
            y = y
                .apply(&b.depthwise.0)
                .apply_t(&b.depthwise.1, train)
                .silu();
            let scale = y
                .adaptive_avg_pool2d([1, 1])
                .apply(&b.se.0)
                .silu()
                .apply(&b.se.1)
                .sigmoid();
            y = (y * scale).apply(&b.project.0).apply_t(&b.project.1, train);
            x = if b.residual {
                drop_path(y, b.drop, train) + x
            } else {
                y
            };
        }
        x.apply(&self.last.0).apply_t(&self.last.1, train).silu()
    }
}

// ---------------------------------------------------------------------------------------------
// ConvNeXt (timm's layout: a 4x4 stride-4 stem, layer norms over channels with eps 1e-6,
// 7x7 depthwise convolutions, a channels-last MLP with exact GELU, layer scale `gamma`).

/// Depths and widths of a ConvNeXt.
#[derive(Clone, Debug)]
pub struct ConvnextConfig {
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Channels per stage.
    pub dims: [i64; 4],
}

impl ConvnextConfig {
    /// ConvNeXt-Tiny.
    pub const TINY: ConvnextConfig = ConvnextConfig {
        depths: [3, 3, 9, 3],
        dims: [96, 192, 384, 768],
    };
}

#[derive(Debug)]
struct Convnext {
    stem: (nn::Conv2D, nn::LayerNorm),
    stages: Vec<CnStage>,
    features: i64,
}

/// A stage: its downsampling (a norm, then a stride-2 convolution), then its blocks.
type CnStage = (Option<(nn::LayerNorm, nn::Conv2D)>, Vec<CnBlock>);

#[derive(Debug)]
struct CnBlock {
    conv_dw: nn::Conv2D,
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    gamma: Tensor,
    drop: f64,
}

fn layer_norm(vs: &nn::Path<'_>, c: i64) -> nn::LayerNorm {
    nn::layer_norm(
        vs,
        vec![c],
        nn::LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        },
    )
}

/// A layer norm over the channels of an `N x C x H x W` tensor.
fn norm_2d(x: &Tensor, norm: &nn::LayerNorm) -> Tensor {
    x.permute([0, 2, 3, 1]).apply(norm).permute([0, 3, 1, 2])
}

impl Convnext {
    fn new(vs: &nn::Path<'_>, cfg: &ConvnextConfig, channels: i64, drop_path: f64) -> Convnext {
        let with_bias = |k: i64, stride: i64, groups: i64| nn::ConvConfig {
            stride,
            padding: if stride == 1 { (k - 1) / 2 } else { 0 },
            groups,
            bias: true,
            ..Default::default()
        };
        let stem = (
            nn::conv2d(
                vs / "stem" / 0,
                channels,
                cfg.dims[0],
                4,
                with_bias(4, 4, 1),
            ),
            layer_norm(&(vs / "stem" / 1), cfg.dims[0]),
        );
        let total: usize = cfg.depths.iter().sum();
        let mut index = 0usize;
        let mut stages = Vec::new();
        for s in 0..4 {
            let p = vs / "stages" / s;
            let dim = cfg.dims[s];
            let downsample = (s > 0).then(|| {
                let d = &p / "downsample";
                (
                    layer_norm(&(&d / 0), cfg.dims[s - 1]),
                    nn::conv2d(&d / 1, cfg.dims[s - 1], dim, 2, with_bias(2, 2, 1)),
                )
            });
            let mut blocks = Vec::new();
            for b in 0..cfg.depths[s] {
                let q = &p / "blocks" / b;
                let drop = if total > 1 {
                    drop_path * index as f64 / (total - 1) as f64
                } else {
                    0.0
                };
                index += 1;
                blocks.push(CnBlock {
                    conv_dw: nn::conv2d(&q / "conv_dw", dim, dim, 7, with_bias(7, 1, dim)),
                    norm: layer_norm(&(&q / "norm"), dim),
                    fc1: nn::linear(&q / "mlp" / "fc1", dim, 4 * dim, Default::default()),
                    fc2: nn::linear(&q / "mlp" / "fc2", 4 * dim, dim, Default::default()),
                    gamma: q.var("gamma", &[dim], nn::Init::Const(1e-6)),
                    drop,
                });
            }
            stages.push((downsample, blocks));
        }
        Convnext {
            stem,
            stages,
            features: cfg.dims[3],
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = norm_2d(&x.apply(&self.stem.0), &self.stem.1);
        for (downsample, blocks) in &self.stages {
            if let Some((norm, conv)) = downsample {
                x = norm_2d(&x, norm).apply(conv);
            }
            for b in blocks {
                let y = x
                    .apply(&b.conv_dw)
                    .permute([0, 2, 3, 1])
                    .apply(&b.norm)
                    .apply(&b.fc1)
                    .gelu("none")
                    .apply(&b.fc2)
                    * &b.gamma;
                x = drop_path(y.permute([0, 3, 1, 2]), b.drop, train) + x;
            }
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Pretrained weights.

/// What loading pretrained weights did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Tensors copied into the network.
    pub copied: usize,
    /// Whether the classification head was left freshly initialised (its size differs).
    pub fresh_head: bool,
    /// Whether three-channel weights of the first convolution were summed for grey images.
    pub summed_channels: bool,
}

/// Copies `tensors` (names as in torchvision or timm) into the network's variables in `vs`.
/// Every variable but the classification head must be present with its shape; BatchNorm's
/// `num_batches_tracked` counters are ignored. The error names the missing and unexpected
/// keys.
pub fn load_named(
    vs: &nn::VarStore,
    net: &Net,
    tensors: Vec<(String, Tensor)>,
    source: &str,
) -> Result<Loaded, String> {
    let mut file: BTreeMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect();
    let vars = vs.variables();
    let head = format!("{}.", net.head_prefix);
    let first = format!("{}.weight", net.first_conv);
    let mut missing: Vec<&str> = vars
        .keys()
        .filter(|k| !file.contains_key(*k) && !k.starts_with(&head))
        .map(String::as_str)
        .collect();
    missing.sort_unstable();
    let unexpected: Vec<&str> = file
        .keys()
        .filter(|k| !vars.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(format!(
            "the weights in {source} do not fit this network: {}{}{}",
            key_list("missing from the file", &missing),
            if !missing.is_empty() && !unexpected.is_empty() {
                "; "
            } else {
                ""
            },
            key_list("in the file but not in the network", &unexpected),
        ));
    }
    let mut loaded = Loaded::default();
    let _guard = tch::no_grad_guard();
    for (name, var) in &vars {
        let Some(src) = file.remove(name) else {
            loaded.fresh_head = true;
            continue;
        };
        let mut src = src.to_kind(Kind::Float);
        let (want, got) = (var.size(), src.size());
        if want != got {
            if name.starts_with(&head) {
                loaded.fresh_head = true;
                continue;
            }
            if *name == first && want.len() == 4 && got.len() == 4 && want[1] == 1 && got[1] == 3 {
                src = src.sum_dim_intlist(1, true, Kind::Float);
                loaded.summed_channels = true;
            } else {
                return Err(format!(
                    "the weights in {source} do not fit this network: `{name}` is {got:?} in the file but {want:?} in the network"
                ));
            }
            if src.size() != want {
                return Err(format!(
                    "the weights in {source} do not fit this network: `{name}` is {got:?} in the file but {want:?} in the network"
                ));
            }
        }
        let mut var = var.shallow_clone();
        var.copy_(&src.to_device(var.device()));
        loaded.copied += 1;
    }
    Ok(loaded)
}

/// Reads a safetensors file and loads it with [`load_named`].
pub fn load_pretrained(vs: &nn::VarStore, net: &Net, path: &Path) -> Result<Loaded, String> {
    if !path.is_file() {
        return Err(format!(
            "the weights file {} does not exist",
            path.display()
        ));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| {
        format!(
            "{} is not a readable safetensors file: {}",
            path.display(),
            first_line(&e.to_string())
        )
    })?;
    load_named(vs, net, tensors, &path.display().to_string())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn key_list(what: &str, keys: &[&str]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = keys.iter().take(6).map(|k| format!("`{k}`")).collect();
    let more = if keys.len() > 6 {
        format!(" and {} more", keys.len() - 6)
    } else {
        String::new()
    };
    format!(
        "{} key{} {what} ({}{more})",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

/// The network's variables (all of `vs` whose names do not start with one of `skip`) written
/// to a safetensors file.
pub fn save(vs: &nn::VarStore, skip: &[&str], path: &Path) -> Result<(), String> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| !skip.iter().any(|s| k.starts_with(s)))
        .map(|(k, v)| (k, v.to_device(tch::Device::Cpu)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)
        .map_err(|e| format!("cannot save the checkpoint {}: {e}", path.display()))
}
