#!/bin/busybox sh
# Stage 1, the initramfs's /init: load the few modules needed to reach the host,
# then make the host's root filesystem the guest's, writable in memory only:
# the host's / (virtio-9p, read-only) is the lower layer of an overlay whose
# upper is a tmpfs.  The host is never written, except the results share.
/bin/busybox --install -s /bin
set -e  # a failure here is a kernel panic: qemu stops, the console says why
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m"; done

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower
mount -t tmpfs -o mode=0755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot

# The guest's kernel modules come from the extracted .deb, not the host's.
mkdir -p "/newroot/lib/modules/$vm_kernel" /newroot/vm-results
mount --bind "/newroot$vm_modules" "/newroot/lib/modules/$vm_kernel"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none results /newroot/vm-results

# What a booted system has mounted, mounted here with busybox's mount: the
# host's own /proc, /sys and /dev are visible through 9p until these cover them,
# and util-linux's mount would read the host's /proc/self/mountinfo.
umount /proc /dev
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/dev/mqueue
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t mqueue mqueue /newroot/dev/mqueue
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t ext4 /newroot/dev/vda /newroot/tmp  # the scratch disk (boot.py)
chmod 1777 /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
exec switch_root /newroot "$vm_python" "$vm_project/tests/vm/guest_init.py"
