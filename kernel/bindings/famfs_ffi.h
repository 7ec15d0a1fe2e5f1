/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C API famfs.ko needs beyond the kernel crate's own bindings (see Kbuild): linux/dax.h,
 * linux/iomap.h, linux/pseudo_fs.h, and the famfs_glue_* wrappers of static inline functions
 * and macros (famfs_glue.c), which bindgen cannot bind.
 */
#include <linux/dax.h>
#include <linux/iomap.h>
#include <linux/pagemap.h>
#include <linux/pseudo_fs.h>
#include <linux/mm.h>
#include <linux/fs.h>
#include <linux/uio.h>

void famfs_glue_inode_lock(struct inode *inode);
void famfs_glue_inode_unlock(struct inode *inode);
void famfs_glue_inode_lock_shared(struct inode *inode);
int famfs_glue_inode_lock_killable(struct inode *inode);
int famfs_glue_dax_break_layout_interruptible(struct inode *inode);
void famfs_glue_inode_unlock_shared(struct inode *inode);
void famfs_glue_file_accessed(struct file *file);
void famfs_glue_iov_iter_truncate(struct iov_iter *i, u64 count);
void famfs_glue_iov_iter_reexpand(struct iov_iter *i, size_t count);
void famfs_glue_vma_set_hugepage(struct vm_area_struct *vma);
unsigned int famfs_glue_pmd_order(void);
void famfs_glue_inode_init(struct inode *inode, umode_t mode, uid_t uid, gid_t gid, loff_t size);
void famfs_glue_invalidate_lock(struct address_space *m);
void famfs_glue_invalidate_unlock(struct address_space *m);
void famfs_glue_invalidate_lock_shared(struct address_space *m);
void famfs_glue_invalidate_unlock_shared(struct address_space *m);
bool famfs_glue_sb_get_active(struct super_block *sb);
bool famfs_glue_mapping_mapped(struct address_space *m);
bool famfs_glue_file_writable(const struct file *file);
void famfs_glue_file_set_seekable(struct file *file);
void famfs_glue_file_set_can_odirect(struct file *file);
bool famfs_glue_module_get(void);
void famfs_glue_module_put(void);
dev_t famfs_glue_dax_devt(struct file *file, const struct device *known);
