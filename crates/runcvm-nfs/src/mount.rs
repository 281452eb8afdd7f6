//! The MOUNT v3 protocol: how the guest's kernel gets an export's root
//! handle before it speaks NFS. It shares the NFS port (`mountport=`), so no
//! portmapper is needed.

use crate::rpc::{Call, PackDyn, args};
use crate::tree::Tree;
use nfs3_types::mount::{dirpath, export_node, fhandle3, mountbody, mountres3, mountres3_ok, mountstat3};
use nfs3_types::rpc::auth_flavor;
use nfs3_types::xdr_codec::{List, Opaque, Void};

pub fn dispatch(tree: &Tree, call: &mut Call) -> Result<Option<Box<dyn PackDyn>>, ()> {
    Ok(match call.procedure {
        0 => Some(Box::new(Void)),
        1 => {
            let path: dirpath<'static> = args(call).ok_or(())?;
            Some(Box::new(mnt(tree, path.0.as_ref())))
        }
        2 => Some(Box::new(List::<mountbody<'static, 'static>>(Vec::new()))),
        3 | 4 => Some(Box::new(Void)),
        5 => {
            let list: Vec<export_node<'static, 'static>> = (0..tree_len(tree))
                .map(|i| export_node {
                    ex_dir: dirpath(Opaque::owned(tree.export(i).name.clone().into_bytes())),
                    ex_groups: List(Vec::new()),
                })
                .collect();
            Some(Box::new(List(list)))
        }
        _ => None,
    })
}

fn tree_len(tree: &Tree) -> usize {
    (0..).take_while(|i| tree.has_export(*i)).count()
}

fn mnt(tree: &Tree, path: &[u8]) -> mountres3<'static> {
    let Some(export) = tree.find_export(path) else {
        runcvm_log::debug!("nfs: mount of unknown export {}", String::from_utf8_lossy(path));
        return mountres3::Err(mountstat3::MNT3ERR_NOENT);
    };
    match tree.root(export) {
        Ok(node) => {
            let handle = tree.handle(&node);
            runcvm_log::debug!("nfs: guest mounted {}", tree.export(export).name);
            mountres3::Ok(mountres3_ok {
                fhandle: fhandle3(handle.data),
                auth_flavors: vec![auth_flavor::AUTH_UNIX as u32],
            })
        }
        Err(_) => mountres3::Err(mountstat3::MNT3ERR_IO),
    }
}
