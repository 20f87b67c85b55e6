//! Profiles as data: a profile file is checked against the QEMU binary that
//! will run it, and a matrix file can bring its own profiles.

use anyhow::{Result, ensure};
use harness::profile::Profiles;

fn profile_with_device(device: &str) -> String {
    format!("[profile.mine]\nmachine = \"pc\"\nsummary = \"s\"\n[[profile.mine.device]]\n{device}\n")
}

#[test]
fn device_models_and_properties_are_checked_with_qemu() -> Result<()> {
    let qemu = harness::qemu::locate()?;
    Profiles::builtin()?.check_against_qemu(&qemu)?;

    let bad_model = Profiles::parse(&profile_with_device("driver = \"virtio-scsi-pcie\""), "mine.toml")?;
    let e = format!("{:#}", bad_model.check_against_qemu(&qemu).expect_err("no such model"));
    ensure!(e.contains("unknown device model \"virtio-scsi-pcie\"") && e.contains("mine.toml"), "{e}");
    ensure!(e.contains("-device help"), "{e}");

    let bad_prop = Profiles::parse(&profile_with_device("driver = \"virtio-scsi-pci\"\nnum-queue = 2"), "mine.toml")?;
    let e = format!("{:#}", bad_prop.check_against_qemu(&qemu).expect_err("no such property"));
    ensure!(e.contains("has no property \"num-queue\"") && e.contains("num_queues"), "{e}");

    let good = Profiles::parse(
        &profile_with_device("driver = \"virtio-scsi-pci\"\nid = \"scsi0\"\nbus = \"pci.0\"\naddr = \"0x9\""),
        "mine.toml",
    )?;
    good.check_against_qemu(&qemu)?;
    Ok(())
}

#[test]
fn a_matrix_file_brings_its_own_profiles() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("profiles.toml"),
        "[profile.beside]\nmachine = \"pc\"\nsummary = \"beside the matrix\"\n",
    )?;
    std::fs::create_dir(dir.path().join("more"))?;
    std::fs::write(
        dir.path().join("more/extra.toml"),
        "[profile.extra]\nmachine = \"q35\"\nsummary = \"listed in profile-files\"\n",
    )?;
    let matrix = dir.path().join("matrix.toml");
    std::fs::write(
        &matrix,
        "profiles = [\"inline\", \"beside\", \"extra\", \"pc\"]\nscenarios = [\"boot\"]\n\
         profile-files = [\"more/extra.toml\"]\n\
         [profile.inline]\nmachine = \"pc\"\nsummary = \"declared in the matrix\"\n",
    )?;
    let file = harness::matrix::MatrixFile::load(&matrix)?;
    let names: Vec<&str> = file.profiles.iter().map(|p| p.name.as_str()).collect();
    ensure!(names == ["inline", "beside", "extra", "pc"], "{names:?}");

    std::fs::write(
        &matrix,
        "profiles = [\"pc\"]\nscenarios = [\"boot\"]\n[profile.pc]\nmachine = \"pc\"\nsummary = \"s\"\n",
    )?;
    let e = format!("{:#}", harness::matrix::MatrixFile::load(&matrix).expect_err("pc twice"));
    ensure!(e.contains("\"pc\" is declared twice"), "{e}");

    std::fs::write(&matrix, "profiles = [\"pc\"]\nscenarios = [\"boot\"]\nprofile-file = [\"x.toml\"]\n")?;
    let e = format!("{:#}", harness::matrix::MatrixFile::load(&matrix).expect_err("typo"));
    ensure!(e.contains("unknown field `profile-file`") && e.contains("matrix.toml"), "{e}");
    Ok(())
}
