//! `arenaxl model init|info`.

use super::grouped;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::engine::presets::{component_info, init_model_folder, ModelConfigs, PRESETS};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a complete random-weight pipeline folder for a preset.
    Init {
        /// sdxl, ssd-1b, vega, tiny-sdxl, tiny-ssd-1b or tiny-vega.
        #[arg(long)]
        preset: String,
        /// Folder to create (diffusers layout).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// List a model's components and parameter counts (from configs; no weights loaded).
    Info {
        /// A diffusers SDXL pipeline folder.
        #[arg(conflicts_with = "preset", required_unless_present = "preset")]
        dir: Option<PathBuf>,
        #[arg(long)]
        preset: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a distillation student: a plan applied to a teacher, weights taken by name.
    Prune {
        /// The teacher: a diffusers SDXL pipeline folder.
        #[arg(long)]
        teacher: PathBuf,
        /// A built-in plan (ssd-1b, vega) or a plan JSON file.
        #[arg(long)]
        plan: String,
        /// Folder to create (diffusers layout).
        #[arg(long)]
        out: PathBuf,
        /// Which teacher transformer blocks a shallower attention keeps.
        #[arg(long, value_enum, default_value_t = crate::distill::Keep::First)]
        keep: crate::distill::Keep,
    },
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Init { preset, out, seed } => {
            init_model_folder(&preset, &out, seed)
                .with_context(|| format!("writing preset `{preset}` to {}", out.display()))?;
            println!("wrote {preset} (seed {seed}) to {}", out.display());
            Ok(())
        }
        ModelCommand::Prune {
            teacher,
            plan,
            out,
            keep,
        } => {
            let file = teacher.join("unet/config.json");
            let cfg = crate::engine::config::read_json(&file)?;
            let (label, chosen) = crate::distill::Plan::from_arg(&plan)?;
            let student = chosen.student(&label, &cfg, &file, keep)?;
            let r = crate::distill::prune::prune(&teacher, &student, &out)?;
            println!(
                "wrote student ({plan}, keep {keep:?}): {} tensors, {} UNet parameters, to {}",
                r.tensors,
                grouped(r.parameters),
                out.display()
            );
            Ok(())
        }
        ModelCommand::Info { dir, preset, json } => {
            let (label, configs) = match (&dir, &preset) {
                (Some(d), _) => (d.display().to_string(), ModelConfigs::folder(d)?),
                (None, Some(p)) => (format!("preset {p}"), ModelConfigs::preset(p)?),
                (None, None) => {
                    anyhow::bail!("give a model folder or --preset ({})", PRESETS.join(", "))
                }
            };
            let info = component_info(&configs)?;
            let total: u64 = info.iter().map(|c| c.parameters).sum();
            if json {
                let v = serde_json::json!({ "model": label, "components": info, "total_parameters": total });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{label}");
                for c in &info {
                    println!(
                        "  {:<15} {:<28} {:>15} parameters",
                        c.name,
                        c.class,
                        grouped(c.parameters)
                    );
                }
                println!(
                    "  {:<15} {:<28} {:>15} parameters",
                    "total",
                    "",
                    grouped(total)
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(crate::cli::grouped(2_567_463_684), "2,567,463,684");
        assert_eq!(crate::cli::grouped(999), "999");
        assert_eq!(crate::cli::grouped(1000), "1,000");
    }
}
