// Z carriage: a platform carrying the y slider between two rails along y, on a block that slides on
// the frame's dovetail.  The focus screw comes up through the frame base into the M3 nut in the ear;
// the y drive screw turns in the front block.  Print flat, platform down.
// Frame: platform bottom at z = 0, axis at x = y = 0.
include <params.scad>

module dovetail_groove() {
    r = dt_w_root / 2 + clearance;
    f = dt_w_face / 2 + clearance;
    linear_extrude(height = 1000, center = true)
        polygon([[-r, y_wall_front + 1], [r, y_wall_front + 1], [f, y_wall_front - dt_depth - clearance],
                 [-f, y_wall_front - dt_depth - clearance]]);
}

module stage_z() {
    block_x = dt_w_face / 2 + 6;
    ytab_xc = (ys_xmin + ys_x0) / 2;
    front_h = platform_t + slider_t + tray_t;
    d_bottom = slide_proud + tray_t + slider_t + platform_t;
    ear_h = 8.0;
    difference() {
        union() {
            translate([pf_xmin, pf_front, 0]) cube([pf_xmax - pf_xmin, pf_back - pf_front, platform_t]);
            for (x = [pf_xmin, pf_xmax - rail_w])
                translate([x, pf_front + block_w, 0]) cube([rail_w, pf_back - pf_front - block_w, platform_t + rail_h]);
            // y drive block
            translate([ytab_xc - 8, pf_front, 0]) cube([16, block_w, front_h]);
            // carriage block on the dovetail, and the focus ear
            translate([-block_x, pf_back - 1, 0]) cube([2 * block_x, zc_block_d - clearance + 1, zc_block_h]);
            translate([block_x - 1, pf_back - 1, 0]) cube([ear_x + 6 - block_x + 1, zc_block_d - clearance + 1, ear_h]);
        }
        dovetail_groove();
        // light window
        translate([0, 0, -1]) cylinder(r = cone_r(d_bottom) + 1, h = platform_t + 2);
        // y screw: free hole (knob in front, lock nut behind the block)
        translate([ytab_xc, pf_front - 1, platform_t + slider_t + tray_t / 2]) rotate([-90, 0, 0])
            cylinder(d = screw_clear_d, h = block_w + 2);
        // focus screw: threaded through the nut in the ear, slot open to +x
        translate([ear_x, y_ear, -1]) cylinder(d = screw_d + 0.3, h = ear_h + 2);
        translate([ear_x - (nut_af + 0.3) / 2, y_ear - (nut_af + 0.3) / 2, 3]) cube([20, nut_af + 0.3, nut_t + 0.3]);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) stage_z();
