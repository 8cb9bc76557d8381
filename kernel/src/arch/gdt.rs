//! GDT and TSS. The TSS carries the interrupt stacks (IST) that double fault,
//! NMI and page fault switch to, so a kernel stack overflow still gets a report.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

pub const DOUBLE_FAULT_IST: u16 = 0;
pub const NMI_IST: u16 = 1;
pub const PAGE_FAULT_IST: u16 = 2;
pub const IST_COUNT: usize = 3;

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, [SegmentSelector; 3])> = Once::new();

/// Loads the GDT and TSS. `ist_tops[i]` is the top of IST stack `i`.
pub fn init(ist_tops: [u64; IST_COUNT]) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let mut table = [VirtAddr::zero(); 7];
        for (slot, top) in table.iter_mut().zip(ist_tops) {
            *slot = VirtAddr::new(top);
        }
        tss.interrupt_stack_table = table;
        tss
    });
    let (gdt, [code, data, tss_sel]) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, [code, data, tss_sel])
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives forever (static).
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        load_tss(*tss_sel);
    }
}
