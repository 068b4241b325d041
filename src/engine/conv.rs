//! 2-D convolution with a faster CPU inference path.
//!
//! candle's CPU convolution first copies the whole input to NHWC and the kernel to
//! (out, kh·kw·in) on one thread, then gathers tiles of patches. For inference on f32 CPU
//! tensors this module instead cuts each image's output into blocks of whole rows (about
//! 512 pixels), and each thread takes a block: it lays that block's patches out as
//! (in·kh·kw, pixels) — every row a shifted copy of part of an input row, so filling it is
//! a series of contiguous copies — and multiplies the kernel, viewed as (out, in·kh·kw)
//! without a copy, by it, into the block's columns of an output that starts as the bias:
//! the product is already NCHW. The patches are multiplied while they are still in the
//! core's cache, and never exist for a whole image (at 64×64 and 384 channels that was
//! 56 MB). A 1×1 kernel multiplies the image itself. Anything that may need gradients (a
//! tensor that tracks ops, as in distillation training), other devices and dtypes keep
//! candle's path.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::kernels;

/// A convolution as diffusers configures it: square kernel, padding kernel/2, no groups.
#[derive(Debug, Clone)]
pub struct Conv2d {
    inner: candle_nn::Conv2d,
}

pub fn conv2d(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let cfg = candle_nn::Conv2dConfig {
        padding: kernel / 2,
        stride,
        ..Default::default()
    };
    Ok(Conv2d {
        inner: candle_nn::conv2d(cin, cout, kernel, cfg, vb)?,
    })
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_onto(x, None, None)
    }
}

impl Conv2d {
    /// The convolution plus, per image and output channel, `shift` (b, out) — a ResNet
    /// block's time embedding — and plus `residual` (the output's shape, its skip
    /// connection). On the CPU inference path both are where the output starts, so they
    /// cost no extra pass.
    pub fn forward_onto(
        &self,
        x: &Tensor,
        shift: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let w = self.inner.weight();
        let cfg = self.inner.config();
        let mut involved: Vec<&Tensor> = vec![x, w];
        involved.extend(self.inner.bias());
        involved.extend(shift);
        involved.extend(residual);
        if !(kernels::applies(&involved) && cfg.groups == 1 && cfg.dilation == 1) {
            let mut out = self.inner.forward(x)?;
            if let Some(s) = shift {
                out = out.broadcast_add(&s.unsqueeze(2)?.unsqueeze(3)?)?;
            }
            return match residual {
                Some(r) => out + r,
                None => Ok(out),
            };
        }
        conv2d_patches(
            &x.contiguous()?,
            &w.contiguous()?,
            Start {
                bias: self.inner.bias(),
                shift,
                residual,
            },
            cfg,
        )
    }
}

/// What a convolution's output starts from before the product is added to it.
struct Start<'a> {
    /// Per output channel.
    bias: Option<&'a Tensor>,
    /// Per image and output channel, (b, out).
    shift: Option<&'a Tensor>,
    /// The output's shape.
    residual: Option<&'a Tensor>,
}

/// The shape of one image's convolution: its plane (h, w), the kernel's (kh, kw), the output's.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    oh: usize,
    ow: usize,
}

/// Output pixels per block of a convolution's product (see [`Geometry::row_blocks`]).
const COLUMNS: usize = 512;

impl Geometry {
    /// Into how many blocks of whole output rows each image's product is cut: blocks of
    /// about `COLUMNS` output pixels, whose patches stay in the core's cache between
    /// being filled and being multiplied, and at least enough blocks for every thread.
    fn row_blocks(&self, images: usize) -> usize {
        let for_threads = rayon::current_num_threads().div_ceil(images.max(1));
        (self.oh * self.ow)
            .div_ceil(COLUMNS)
            .max(for_threads)
            .clamp(1, self.oh.max(1))
    }
}

/// Convolution of contiguous f32 CPU tensors through patch matrices of blocks of output
/// rows, the blocks of all images spread over the threads, each output starting from
/// `start`.
fn conv2d_patches(
    x: &Tensor,
    w: &Tensor,
    start: Start,
    cfg: &candle_nn::Conv2dConfig,
) -> Result<Tensor> {
    let (pad, stride) = (cfg.padding, cfg.stride);
    let (b, c, h, wd) = x.dims4()?;
    let (o, c_w, kh, kw) = w.dims4()?;
    if c != c_w {
        candle_core::bail!("conv2d: input has {c} channels, the kernel expects {c_w}");
    }
    let stride = stride.max(1);
    if h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!("conv2d: input {h}x{wd} is smaller than the kernel {kh}x{kw}");
    }
    let g = Geometry {
        h,
        w: wd,
        kh,
        kw,
        pad,
        stride,
        oh: (h + 2 * pad - kh) / stride + 1,
        ow: (wd + 2 * pad - kw) / stride + 1,
    };
    let k = c * kh * kw;
    let n = g.oh * g.ow;
    if let Some(r) = start.residual.filter(|r| r.dims() != [b, o, g.oh, g.ow]) {
        candle_core::bail!(
            "conv2d: residual {:?} is not the output's shape {:?}",
            r.dims(),
            [b, o, g.oh, g.ow]
        );
    }
    // The bias and the shift as one value per (image, output channel).
    let mut offsets = vec![0f32; b * o];
    if let Some(bias) = start.bias {
        let bias = kernels::values(bias)?;
        if bias.len() != o {
            candle_core::bail!("conv2d: {o} output channels but {} biases", bias.len());
        }
        offsets
            .chunks_mut(o)
            .for_each(|row| row.copy_from_slice(&bias));
    }
    if let Some(shift) = start.shift {
        if shift.dims() != [b, o] {
            candle_core::bail!("conv2d: shift {:?} is not ({b}, {o})", shift.dims());
        }
        let shift = kernels::values(shift)?;
        offsets.iter_mut().zip(&shift).for_each(|(v, &s)| *v += s);
    }
    let mut out = vec![0f32; b * o * n];
    let add = if start.bias.is_some() || start.shift.is_some() {
        kernels::Add::PerRow(&offsets)
    } else {
        kernels::Add::Nothing
    };
    kernels::start_from(&mut out, n, start.residual, add)?;
    let accumulate = start.bias.is_some() || start.shift.is_some() || start.residual.is_some();
    // A 1×1 kernel at stride 1 reads the image itself as its patch matrix.
    let direct = kh * kw == 1 && stride == 1 && pad == 0;
    let blocks = g.row_blocks(b);
    let rows_per_block = g.oh.div_ceil(blocks);
    let dst = kernels::Out::new(&mut out);
    if o * n > 0 {
        kernels::with_data(x, |input| {
            kernels::with_data(w, |kernel| {
                let plane = c * h * wd;
                (0..b * blocks)
                    .into_par_iter()
                    .for_each_init(Vec::new, |cols, job| {
                        let (image, block) = (job / blocks, job % blocks);
                        let oy = block * rows_per_block..((block + 1) * rows_per_block).min(g.oh);
                        if oy.is_empty() {
                            return;
                        }
                        let j0 = oy.start * g.ow;
                        let nb = oy.len() * g.ow;
                        let image_in = &input[image * plane..(image + 1) * plane];
                        let (rhs, rhs_rs) = if direct {
                            (&image_in[j0..], n)
                        } else {
                            cols.resize(k * nb, 0.0);
                            fill_patches(image_in, cols, g, oy);
                            (&cols[..], nb)
                        };
                        // SAFETY: each job writes the columns j0..j0 + nb of its own image's
                        // (o, n) output; the kernel is (o, k) and `rhs` holds k rows of nb
                        // values, `rhs_rs` apart.
                        unsafe {
                            kernels::product_block(
                                dst.at(image * o * n + j0),
                                n,
                                (kernel, k),
                                (rhs, rhs_rs),
                                (o, nb, k),
                                accumulate,
                            )
                        }
                    })
            })
        })??;
    }
    Tensor::from_vec(out, (b, o, g.oh, g.ow), x.device())
}

/// Fills the patch matrix of one image's output rows `oy`: row (ci, ki, kj) holds, for
/// each of those output pixels, the input value its kernel tap (ki, kj) reads in channel
/// ci (0 in the padding). Every entry is written, so the buffer needs no clearing.
fn fill_patches(input: &[f32], cols: &mut [f32], g: Geometry, oy: std::ops::Range<usize>) {
    let plane = g.h * g.w;
    let per_channel = g.kh * g.kw * oy.len() * g.ow;
    if per_channel == 0 || plane == 0 {
        return;
    }
    for (dst, src) in cols.chunks_mut(per_channel).zip(input.chunks(plane)) {
        fill_channel(src, dst, g, oy.clone());
    }
}

/// The kh·kw rows of one channel's patch matrix, for the output rows `oys`.
fn fill_channel(src: &[f32], dst: &mut [f32], g: Geometry, oys: std::ops::Range<usize>) {
    let nb = oys.len() * g.ow;
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let row = &mut dst[(ki * g.kw + kj) * nb..(ki * g.kw + kj + 1) * nb];
            for (out, oy) in row.chunks_mut(g.ow).zip(oys.clone()) {
                // Input row read by this tap, if inside the image.
                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                if iy < 0 || iy >= g.h as isize {
                    out.fill(0.0);
                    continue;
                }
                let line = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
                if g.stride == 1 {
                    // Output x reads input x + kj - pad: one shifted copy, zeros at the ends.
                    let shift = kj as isize - g.pad as isize;
                    let first = (-shift).max(0) as usize;
                    let last =
                        ((g.w as isize - shift).min(g.ow as isize)).max(first as isize) as usize;
                    out[..first].fill(0.0);
                    out[last..].fill(0.0);
                    let from = (first as isize + shift) as usize;
                    out[first..last].copy_from_slice(&line[from..from + (last - first)]);
                } else {
                    for (ox, v) in out.iter_mut().enumerate() {
                        let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                        *v = if ix < 0 || ix >= g.w as isize {
                            0.0
                        } else {
                            line[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The patch path against candle's own convolution: 3×3 and 4×4 kernels, strides 1 and
    /// 2, padding, odd sizes, bias, batches of 1 and 2, and images large enough to be cut
    /// into several blocks of output rows (the last one shorter).
    #[test]
    fn matches_candles_convolution() -> Result<()> {
        let dev = Device::Cpu;
        for (b, c, o, h, w, k, stride) in [
            (1, 3, 5, 7, 9, 3, 1),
            (1, 2, 4, 45, 33, 3, 1),
            (1, 3, 4, 64, 29, 3, 2),
            (1, 5, 3, 37, 30, 1, 1),
        ]
        .into_iter()
        .chain(
            [
                (3, 5, 7, 9, 3, 1),
                (4, 6, 8, 8, 3, 2),
                (2, 3, 6, 5, 4, 1),
                (3, 2, 9, 7, 3, 2),
                (3, 5, 7, 9, 1, 1),
                (4, 3, 6, 6, 1, 2),
            ]
            .map(|(c, o, h, w, k, stride)| (2, c, o, h, w, k, stride)),
        ) {
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (o, c, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, o, &dev)?;
            let cfg = candle_nn::Conv2dConfig {
                padding: k / 2,
                stride,
                ..Default::default()
            };
            let conv = Conv2d {
                inner: candle_nn::Conv2d::new(weight, Some(bias), cfg),
            };
            let fast = conv.forward(&x)?;
            let reference = conv.inner.forward(&x)?;
            assert_eq!(
                fast.dims(),
                reference.dims(),
                "b{b} c{c} o{o} {h}x{w} k{k} s{stride}"
            );
            let diff = (fast - reference)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "b{b} c{c} o{o} {h}x{w} k{k} s{stride}: max diff {diff}"
            );
        }
        Ok(())
    }

    /// The time embedding (per image and channel) and the skip connection added where the
    /// output starts equal candle's convolution followed by the two adds.
    #[test]
    fn shift_and_residual_match_the_separate_adds() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6, 5), &dev)?;
        let weight = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?;
        let bias = Tensor::randn(0f32, 1.0, 4, &dev)?;
        let shift = Tensor::randn(0f32, 1.0, (2, 4), &dev)?;
        let residual = Tensor::randn(0f32, 1.0, (2, 4, 6, 5), &dev)?;
        let conv = Conv2d {
            inner: candle_nn::Conv2d::new(
                weight,
                Some(bias),
                candle_nn::Conv2dConfig {
                    padding: 1,
                    ..Default::default()
                },
            ),
        };
        let reference = (conv
            .inner
            .forward(&x)?
            .broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)?
            + &residual)?;
        let fast = conv.forward_onto(&x, Some(&shift), Some(&residual))?;
        let diff = (fast - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max diff {diff}");
        let wrong = Tensor::zeros((2, 4, 5, 5), DType::F32, &dev)?;
        let err = conv.forward_onto(&x, None, Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("not the output's shape"), "{err}");
        Ok(())
    }

    /// A tensor that tracks gradients takes candle's path, so training still gets them.
    #[test]
    fn gradients_flow_through_candles_path() -> Result<()> {
        let dev = Device::Cpu;
        let weight = candle_core::Var::randn(0f32, 1.0, (2, 3, 3, 3), &dev)?;
        let conv = Conv2d {
            inner: candle_nn::Conv2d::new(weight.as_tensor().clone(), None, Default::default()),
        };
        let x = Tensor::randn(0f32, 1.0, (1, 3, 5, 5), &dev)?;
        let grads = conv.forward(&x)?.sum_all()?.backward()?;
        assert!(grads.get(weight.as_tensor()).is_some());
        Ok(())
    }
}
