/work/main/guest/kernel/target/debug/deps/kernel-e1ee938e1d0cd1e5.d: src/lib.rs src/base/mod.rs src/base/bus.rs src/base/dd.rs src/base/device.rs src/base/stats.rs src/base/uevent.rs src/cmdline.rs src/console.rs src/control/mod.rs src/control/verbs.rs src/driverfs/mod.rs src/driverfs/file.rs src/driverfs/snapshot.rs src/errno.rs src/executor.rs src/hw.rs src/pci/mod.rs src/pci/config.rs src/pci/device.rs src/pci/ids.rs src/pci/irq.rs src/pci/resources.rs src/system.rs src/testbus.rs src/uart.rs

/work/main/guest/kernel/target/debug/deps/libkernel-e1ee938e1d0cd1e5.rlib: src/lib.rs src/base/mod.rs src/base/bus.rs src/base/dd.rs src/base/device.rs src/base/stats.rs src/base/uevent.rs src/cmdline.rs src/console.rs src/control/mod.rs src/control/verbs.rs src/driverfs/mod.rs src/driverfs/file.rs src/driverfs/snapshot.rs src/errno.rs src/executor.rs src/hw.rs src/pci/mod.rs src/pci/config.rs src/pci/device.rs src/pci/ids.rs src/pci/irq.rs src/pci/resources.rs src/system.rs src/testbus.rs src/uart.rs

/work/main/guest/kernel/target/debug/deps/libkernel-e1ee938e1d0cd1e5.rmeta: src/lib.rs src/base/mod.rs src/base/bus.rs src/base/dd.rs src/base/device.rs src/base/stats.rs src/base/uevent.rs src/cmdline.rs src/console.rs src/control/mod.rs src/control/verbs.rs src/driverfs/mod.rs src/driverfs/file.rs src/driverfs/snapshot.rs src/errno.rs src/executor.rs src/hw.rs src/pci/mod.rs src/pci/config.rs src/pci/device.rs src/pci/ids.rs src/pci/irq.rs src/pci/resources.rs src/system.rs src/testbus.rs src/uart.rs

src/lib.rs:
src/base/mod.rs:
src/base/bus.rs:
src/base/dd.rs:
src/base/device.rs:
src/base/stats.rs:
src/base/uevent.rs:
src/cmdline.rs:
src/console.rs:
src/control/mod.rs:
src/control/verbs.rs:
src/driverfs/mod.rs:
src/driverfs/file.rs:
src/driverfs/snapshot.rs:
src/errno.rs:
src/executor.rs:
src/hw.rs:
src/pci/mod.rs:
src/pci/config.rs:
src/pci/device.rs:
src/pci/ids.rs:
src/pci/irq.rs:
src/pci/resources.rs:
src/system.rs:
src/testbus.rs:
src/uart.rs:

# env-dep:CARGO_PKG_VERSION=0.1.0
