//! Each kernel against the candle ops it replaces, on random inputs of awkward sizes.

use super::*;
use candle_core::{Module, D};

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

fn randn(shape: &[usize]) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu)
}

#[test]
fn group_norm_matches_candles_with_and_without_silu() -> Result<()> {
    for (b, c, h, w, groups) in [(2, 8, 5, 7, 4), (1, 6, 3, 3, 3), (2, 4, 1, 1, 2)] {
        let x = randn(&[b, c, h, w])?.affine(3.0, 1.5)?;
        let weight = randn(&[c])?;
        let bias = randn(&[c])?;
        let gn = candle_nn::GroupNorm::new(weight.clone(), bias.clone(), c, groups, 1e-5)?;
        let reference = gn.forward(&x)?;
        let plain = group_norm(&x, &weight, &bias, groups, 1e-5, false)?;
        assert!(
            max_diff(&plain, &reference)? < 1e-4,
            "{b}x{c}x{h}x{w}/{groups}"
        );
        let fused = group_norm(&x, &weight, &bias, groups, 1e-5, true)?;
        assert!(max_diff(&fused, &reference.silu()?)? < 1e-4);
    }
    Ok(())
}

#[test]
fn group_norm_refuses_channels_that_do_not_split() -> Result<()> {
    let x = randn(&[1, 6, 2, 2])?;
    let err = group_norm(&x, &randn(&[6])?, &randn(&[6])?, 4, 1e-5, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("6 channels do not split into 4 groups"),
        "{err}"
    );
    let err = group_norm(&x, &randn(&[5])?, &randn(&[6])?, 3, 1e-5, false).unwrap_err();
    assert!(err.to_string().contains("5 weights"), "{err}");
    Ok(())
}

/// Attention the way the engine computed it before: heads split, scores materialised.
fn reference_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let split = |x: &Tensor| -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, heads, c / heads))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let probs = candle_nn::ops::softmax(&(q * scale)?.matmul(&k.t()?)?, D::Minus1)?;
    let out = probs.matmul(&v)?;
    let (b, h, n, d) = out.dims4()?;
    out.transpose(1, 2)?.reshape((b, n, h * d))
}

#[test]
fn attention_matches_the_materialised_scores() -> Result<()> {
    // Self-attention over more rows than one tile (and not a multiple of it), cross-
    // attention to 77 tokens with a different value width, one head, one row.
    for (b, n, m, heads, d, dv) in [
        (2, 300, 300, 3, 8, 8),
        (2, 70, 77, 2, 16, 4),
        (1, 5, 9, 1, 6, 6),
        (1, 1, 3, 2, 4, 4),
    ] {
        let q = (randn(&[b, n, heads * d])? * 2.0)?;
        let k = randn(&[b, m, heads * d])?;
        let v = randn(&[b, m, heads * dv])?;
        let scale = (d as f64).powf(-0.5);
        let fast = attention(&q, &k, &v, heads, scale as f32)?;
        let reference = reference_attention(&q, &k, &v, heads, scale)?;
        assert!(
            max_diff(&fast, &reference)? < 1e-4,
            "b{b} n{n} m{m} h{heads} d{d}"
        );
    }
    Ok(())
}

#[test]
fn attention_refuses_mismatched_shapes() -> Result<()> {
    let q = randn(&[1, 4, 8])?;
    let k = randn(&[1, 5, 8])?;
    let err = attention(&q, &k, &randn(&[1, 6, 8])?, 2, 1.0).unwrap_err();
    assert!(err.to_string().contains("do not fit together"), "{err}");
    let err = attention(&q, &k, &randn(&[1, 5, 8])?, 3, 1.0).unwrap_err();
    assert!(err.to_string().contains("heads"), "{err}");
    Ok(())
}

#[test]
fn geglu_matches_candles_ops() -> Result<()> {
    for shape in [[2, 37, 40], [1, 3, 2]] {
        let h = (randn(&shape)? * 2.0)?;
        let half = shape[2] / 2;
        let reference =
            (h.narrow(D::Minus1, 0, half)? * h.narrow(D::Minus1, half, half)?.gelu_erf()?)?;
        assert!(max_diff(&geglu(&h)?, &reference)? < 1e-5, "{shape:?}");
    }
    assert!(geglu(&randn(&[2, 3])?)
        .unwrap_err()
        .to_string()
        .contains("odd"));
    Ok(())
}

#[test]
fn linear_matches_candles_with_bias_residual_and_the_stored_layout() -> Result<()> {
    let x = randn(&[2, 13, 24])?;
    let w = randn(&[10, 24])?;
    let b = randn(&[10])?;
    let residual = randn(&[2, 13, 10])?;
    for bias in [Some(b), None] {
        let reference = candle_nn::Linear::new(w.clone(), bias.clone()).forward(&x)?;
        let fast = linear(&x, &w, bias.as_ref(), None)?;
        assert!(max_diff(&fast, &reference)? < 1e-4);
        // The residual is added where the output is made.
        let fast = linear(&x, &w, bias.as_ref(), Some(&residual))?;
        assert!(max_diff(&fast, &(&reference + &residual)?)? < 1e-4);
        // The transposed layout the engine stores at load gives the same product.
        let stored = w.t()?.contiguous()?.t()?;
        assert!(!stored.is_contiguous());
        let fast = linear(&x, &stored, bias.as_ref(), None)?;
        assert!(max_diff(&fast, &reference)? < 1e-4);
    }
    let err = linear(&randn(&[2, 7])?, &w, None, None).unwrap_err();
    assert!(
        err.to_string().contains("does not end in 24 features"),
        "{err}"
    );
    let err = linear(&x, &w, None, Some(&randn(&[2, 13, 9])?)).unwrap_err();
    assert!(err.to_string().contains("not the output's shape"), "{err}");
    Ok(())
}

#[test]
fn transpose_matches_candles() -> Result<()> {
    for (r, c) in [(70, 45), (1, 33), (32, 32), (3, 1)] {
        let w = randn(&[r, c])?;
        let t = transpose(&w)?;
        assert!(t.is_contiguous());
        assert_eq!(max_diff(&t, &w.t()?.contiguous()?)?, 0.0, "{r}x{c}");
    }
    Ok(())
}

#[test]
fn applies_only_to_f32_cpu_tensors_without_gradients() -> Result<()> {
    let x = randn(&[2, 2])?;
    assert!(applies(&[&x]));
    assert!(!applies(&[&x, &x.to_dtype(DType::F16)?]));
    let var = candle_core::Var::from_tensor(&x)?;
    assert!(!applies(&[&(var.as_tensor() * 2.0)?]));
    Ok(())
}
