// SPDX-License-Identifier: GPL-2.0
/*
 * famfs.ko glue: out-of-line copies of static inline functions and macros the Rust side needs
 * (bindgen cannot bind them). Nothing here decides anything: every function is one kernel call
 * or one flag test, so the logic stays in Rust.
 */
#include "bindings/famfs_ffi.h"
#include <linux/uidgid.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/module.h>
#include <linux/string.h>

void famfs_glue_inode_lock(struct inode *inode) { inode_lock(inode); }
void famfs_glue_inode_unlock(struct inode *inode) { inode_unlock(inode); }
void famfs_glue_inode_lock_shared(struct inode *inode) { inode_lock_shared(inode); }
int famfs_glue_inode_lock_killable(struct inode *inode) { return inode_lock_killable(inode); }
void famfs_glue_inode_unlock_shared(struct inode *inode) { inode_unlock_shared(inode); }
void famfs_glue_file_accessed(struct file *file) { file_accessed(file); }
void famfs_glue_iov_iter_truncate(struct iov_iter *i, u64 count) { iov_iter_truncate(i, count); }
void famfs_glue_iov_iter_reexpand(struct iov_iter *i, size_t count) { iov_iter_reexpand(i, count); }
void famfs_glue_vma_set_hugepage(struct vm_area_struct *vma) { vm_flags_set(vma, VM_HUGEPAGE); }
unsigned int famfs_glue_pmd_order(void) { return PMD_ORDER; }
void famfs_glue_invalidate_lock(struct address_space *m) { filemap_invalidate_lock(m); }
void famfs_glue_invalidate_unlock(struct address_space *m) { filemap_invalidate_unlock(m); }
void famfs_glue_invalidate_lock_shared(struct address_space *m) { filemap_invalidate_lock_shared(m); }
void famfs_glue_invalidate_unlock_shared(struct address_space *m) { filemap_invalidate_unlock_shared(m); }
/* dax_break_layout()'s wait callback: sleep (the core set TASK_INTERRUPTIBLE before calling). */
static void famfs_glue_dax_wait(struct inode *inode) { schedule(); }

/* Waits, interruptibly, until no page of @inode's DAX mapping is referenced, then drops its DAX
 * entries; -ERESTARTSYS when a signal came first (the entries then stay). */
int famfs_glue_dax_break_layout_interruptible(struct inode *inode)
{
	return dax_break_layout(inode, 0, LLONG_MAX, famfs_glue_dax_wait);
}

/* An active reference to @sb unless it is already being shut down (released with
 * deactivate_super()). */
bool famfs_glue_sb_get_active(struct super_block *sb) { return atomic_inc_not_zero(&sb->s_active); }
bool famfs_glue_mapping_mapped(struct address_space *m) { return mapping_mapped(m); }
bool famfs_glue_file_writable(const struct file *file) { return file->f_mode & FMODE_WRITE; }

void famfs_glue_inode_init(struct inode *inode, umode_t mode, uid_t uid, gid_t gid, loff_t size)
{
	inode->i_mode = mode;
	inode->i_uid = make_kuid(&init_user_ns, uid);
	inode->i_gid = make_kgid(&init_user_ns, gid);
	/* No atime updates: nobody reads these inodes' atime (a mount shows the FUSE inode's), and
	 * touch_atime was a measured share of every small read(2) (issue 26). */
	inode->i_flags |= S_DAX | S_NOATIME;
	i_size_write(inode, size);
	simple_inode_init_ts(inode);
}

/* alloc_file_pseudo() makes stream-like files; ours are seekable regular files. */
void famfs_glue_file_set_seekable(struct file *file)
{
	file->f_mode |= FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE | FMODE_CAN_ODIRECT;
}

/* O_DIRECT is the only I/O a DAX file has (no page cache): accept the flag. */
void famfs_glue_file_set_can_odirect(struct file *file) { file->f_mode |= FMODE_CAN_ODIRECT; }

/* A file made with alloc_file_pseudo() gives back a reference to f_op->owner at its last fput;
 * it must be taken first, as every opener of a file does. */
bool famfs_glue_module_get(void) { return try_module_get(THIS_MODULE); }
void famfs_glue_module_put(void) { module_put(THIS_MODULE); }

/*
 * The devt of the devdax device open as @file, or 0 when @file is not a devdax character
 * device. dax_dev_get() must only see real dax devts: for any other it makes a dead dax inode.
 * A devdax cdev's parent kobject is its dev_dax struct device (cdev_set_parent() in
 * drivers/dax/device.c and fsdev.c); @known is any struct device, whose ktype proves that the
 * parent kobject is embedded in a struct device before kobj_to_dev() is used. The open @file
 * holds the cdev, and the cdev holds its parent, so both stay valid here.
 */
dev_t famfs_glue_dax_devt(struct file *file, const struct device *known)
{
	struct inode *inode = file_inode(file);
	struct kobject *parent;
	struct device *dev;

	if (!S_ISCHR(inode->i_mode) || !inode->i_cdev)
		return 0;
	parent = inode->i_cdev->kobj.parent;
	if (!parent || parent->ktype != known->kobj.ktype)
		return 0;
	dev = kobj_to_dev(parent);
	if (!dev->bus || strcmp(dev->bus->name, "dax") || dev->devt != inode->i_rdev)
		return 0;
	return dev->devt;
}
