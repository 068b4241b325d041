//! Distillation plans: built-ins reproduce the SSD-1B and Vega configs exactly, custom
//! plans are checked against the teacher, and the layer map renumbers kept blocks.

use std::path::Path;
use std::process::Command;

use arenaxl::distill::plan::{pick, Keep, Plan};
use arenaxl::distill::FeatureLevel;
use arenaxl::engine::config::UNetConfig;
use arenaxl::engine::presets::preset_files;
use arenaxl::engine::unet::layout::UNetLayout;

fn unet(preset: &str) -> UNetConfig {
    serde_json::from_str(preset_files(preset).unwrap().unet).unwrap()
}

fn layout(c: &UNetConfig) -> UNetLayout {
    UNetLayout::resolve(c, Path::new("x")).unwrap()
}

fn plan(json: &str) -> Plan {
    serde_json::from_str(json).unwrap()
}

fn err(p: &Plan, teacher: &str) -> String {
    p.student("p", &unet(teacher), Path::new("t"), Keep::First)
        .unwrap_err()
        .to_string()
}

#[test]
fn builtin_plans_give_the_published_students() {
    let sdxl = unet("sdxl");
    for (name, preset, params) in [
        ("ssd-1b", "ssd-1b", 1_331_334_404u64),
        ("vega", "vega", 745_225_604),
    ] {
        let s = Plan::builtin(name)
            .unwrap()
            .student(name, &sdxl, Path::new("sdxl"), Keep::First)
            .unwrap();
        assert_eq!(s.parameters().unwrap(), params, "{name}");
        assert_eq!(
            s.layout,
            layout(&unet(preset)),
            "{name}: layout differs from preset"
        );
    }
}

#[test]
fn custom_plan_on_tiny_teacher_gives_tiny_ssd_1b() {
    let p = plan(
        r#"{"down": [null, [2, 1], [3, 2]], "up": [[2, 2, 3], [2, 1, 1], null], "mid": "resnet"}"#,
    );
    let s = p
        .student("tiny", &unet("tiny-sdxl"), Path::new("t"), Keep::First)
        .unwrap();
    assert_eq!(s.layout, layout(&unet("tiny-ssd-1b")));
    // And the diffusers JSON it writes reads back to the same layout.
    let raw: serde_json::Value =
        serde_json::from_str(preset_files("tiny-sdxl").unwrap().unet).unwrap();
    let json = s.config_json(&raw).unwrap();
    assert_eq!(json["mid_block_type"], "UNetMidBlock2D");
    assert_eq!(
        json["addition_embed_type_num_heads"], 64,
        "teacher keys kept"
    );
    let back: UNetConfig = serde_json::from_value(json).unwrap();
    assert_eq!(layout(&back), s.layout);
}

#[test]
fn plans_that_do_not_fit_are_rejected_with_the_place() {
    let e = err(&Plan::builtin("ssd-1b").unwrap(), "tiny-sdxl");
    assert!(
        e.contains("down block 2, layer 0: depth 4 is larger than the teacher's 3"),
        "{e}"
    );
    let e = err(
        &plan(
            r#"{"down": [[1, 1], [2, 2], [3, 3]], "up": [[1,1,1], [1,1,1], null], "mid": "resnet"}"#,
        ),
        "tiny-sdxl",
    );
    assert!(
        e.contains("down block 0") && e.contains("no attentions"),
        "{e}"
    );
    let e = err(
        &plan(r#"{"down": [null, [2], [3, 3]], "up": [[1,1,1], [1,1,1], null], "mid": "resnet"}"#),
        "tiny-sdxl",
    );
    assert!(
        e.contains("down block 1: 1 depths given but the student block has 2 layers"),
        "{e}"
    );
    let e = err(
        &plan(r#"{"down": [null, [2, 2]], "up": [[1,1,1], null], "mid": "resnet"}"#),
        "tiny-sdxl",
    );
    assert!(
        e.contains("2 down and 2 up blocks but the teacher has 3"),
        "{e}"
    );
    let e = err(
        &plan(
            r#"{"down": [null, [1, 1], [2, 2]], "up": [[2,2,2], [1,0,1], null], "mid": "resnet"}"#,
        ),
        "tiny-sdxl",
    );
    assert!(e.contains("up block 1, layer 1: depth 0"), "{e}");
    let e = err(
        &plan(
            r#"{"down": [null, [1, 1], [2, 2]], "up": [[2,2,2], [1,1,1], null], "mid": "cross_attn"}"#,
        ),
        "tiny-vega",
    );
    assert!(
        e.contains("mid: the teacher's mid block has no attention"),
        "{e}"
    );
    let e = err(
        &plan(
            r#"{"down": [null, [1, 1], [2, 2]], "up": [[2,2,2], [1,1,1], null], "mid": "resnet", "layers_per_block": [2, 3, 2]}"#,
        ),
        "tiny-sdxl",
    );
    assert!(e.contains("layers_per_block[1] = 3"), "{e}");
    assert!(
        serde_json::from_str::<Plan>(r#"{"down": [], "up": [], "mid": "resnet", "depth": 1}"#)
            .is_err()
    );
}

#[test]
fn kept_blocks_are_renumbered_first_or_even() {
    assert_eq!(pick(10, 4, Keep::First), vec![0, 1, 2, 3]);
    assert_eq!(pick(10, 4, Keep::Even), vec![0, 3, 6, 9]);
    assert_eq!(pick(3, 2, Keep::Even), vec![0, 2]);
    let s = Plan::builtin("vega")
        .unwrap()
        .student("vega", &unet("tiny-sdxl"), Path::new("t"), Keep::Even)
        .unwrap();
    let m = &s.map;
    assert_eq!(
        m.teacher_param("down_blocks.2.attentions.1.transformer_blocks.1.attn1.to_q.weight")
            .as_deref(),
        Some("down_blocks.2.attentions.1.transformer_blocks.2.attn1.to_q.weight")
    );
    assert_eq!(
        m.teacher_param("up_blocks.0.attentions.2.proj_in.weight")
            .as_deref(),
        Some("up_blocks.0.attentions.2.proj_in.weight")
    );
    assert_eq!(
        m.teacher_param("mid_block.resnets.0.conv1.weight")
            .as_deref(),
        Some("mid_block.resnets.0.conv1.weight")
    );
    assert_eq!(
        m.teacher_param("down_blocks.2.attentions.1.transformer_blocks.2.x"),
        None
    );
}

#[test]
fn fewer_resnets_keep_the_first_and_the_up_blocks_last() {
    let p = plan(
        r#"{"down": [null, [2], [3]], "up": [[3, 3], [2, 1], null], "mid": "cross_attn", "layers_per_block": [1, 1, 1]}"#,
    );
    let s = p
        .student("bk", &unet("tiny-sdxl"), Path::new("t"), Keep::First)
        .unwrap();
    assert_eq!(s.map.up_resnets[0], vec![0, 2]);
    assert_eq!(
        s.map
            .teacher_param("up_blocks.1.resnets.1.conv1.weight")
            .as_deref(),
        Some("up_blocks.1.resnets.2.conv1.weight")
    );
    assert_eq!(
        s.map.teacher_feature("up.1.attentions.1").as_deref(),
        Some("up.1.attentions.2")
    );
    let student: Vec<String> = [
        "down.1.resnets.0",
        "down.1.attentions.0",
        "mid",
        "up.0.resnets.1",
    ]
    .map(String::from)
    .to_vec();
    let teacher: Vec<String> = [
        "down.1.resnets.0",
        "down.1.attentions.0",
        "down.1.attentions.1",
        "mid",
        "up.0.resnets.2",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        s.map.feature_pairs(&student, &teacher, FeatureLevel::Block),
        vec![
            (
                "down.1.attentions.0".to_string(),
                "down.1.attentions.1".to_string()
            ),
            ("mid".to_string(), "mid".to_string()),
            ("up.0.resnets.1".to_string(), "up.0.resnets.2".to_string()),
        ]
    );
}

#[test]
fn cli_prints_the_student_and_its_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args([
            "distill", "plan", "--preset", "sdxl", "--plan", "vega", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parameters"], 745_225_604u64);
    assert_eq!(v["teacher_parameters"], 2_567_463_684u64);
    assert_eq!(
        v["unet_config"]["reverse_transformer_layers_per_block"][0],
        serde_json::json!([2, 2, 2])
    );
}

#[test]
fn later_stages_match_the_original_teacher_through_composed_maps() {
    let bk = plan(
        r#"{"down": [null, [2], [3]], "up": [[3, 3], [2, 1], null], "mid": "resnet", "layers_per_block": [1, 1, 1]}"#,
    );
    let first = bk
        .student("bk", &unet("tiny-sdxl"), Path::new("t"), Keep::First)
        .unwrap();
    // Second stage on the first stage's student: shallower attentions, same resnets.
    let second = plan(r#"{"down": [null, [1], [1]], "up": [[1, 1], [1, 1], null], "mid": "none"}"#)
        .student("s2", &first.config, Path::new("s1"), Keep::First)
        .unwrap();
    assert_eq!(second.map.up_resnets[0], vec![0, 1]);
    let m = second.map.through(&first.map);
    assert_eq!(m.up_resnets[0], vec![0, 2]);
    assert_eq!(
        m.teacher_feature("up.0.attentions.1").as_deref(),
        Some("up.0.attentions.2")
    );
    assert_eq!(m.teacher_feature("mid").as_deref(), Some("mid"));
}
