// Y slider: carries the sample tray between two rails along x; the x drive screw turns in the block
// at its +x end; an M3 nut in the tab at its -x end takes the y drive screw.  Print flat.
// Frame: slider bottom at z = 0, axis at x = y = 0 (nominal position).
include <params.scad>

module stage_y() {
    top = slider_t + tray_t;                       // blocks are flush with the tray top
    screw_z = slider_t + tray_t / 2;
    d_bottom = slide_proud + tray_t + slider_t;    // sample to slider underside
    win_x = cone_r(d_bottom) + 1;
    win_y = cone_r(d_bottom) + y_travel + 1;
    ytab_xc = (ys_xmin + ys_x0) / 2;
    difference() {
        union() {
            translate([ys_xmin, -ys_dy / 2, 0]) cube([ys_x1 - ys_xmin, ys_dy, slider_t]);
            // rails guiding the tray along x
            for (s = [-1, 1])
                translate([ys_x0, s > 0 ? tray_dy / 2 + clearance : -ys_dy / 2, 0])
                    cube([ys_x1 - ys_x0, rail_w, slider_t + rail_h]);
            // x drive block
            translate([ys_x1 - block_w, -ys_dy / 2, 0]) cube([block_w, ys_dy, top]);
            // y drive tab
            translate([ys_xmin, -ys_dy / 2, 0]) cube([ytab_w, ys_dy, top]);
        }
        // light window
        translate([-win_x, -win_y, -1]) cube([2 * win_x, 2 * win_y, slider_t + 2]);
        // x screw: free hole through the block (the screw turns; knob outside, lock nut inside)
        translate([ys_x1 - block_w - 1, 0, screw_z]) rotate([0, 90, 0]) cylinder(d = screw_clear_d, h = block_w + 2);
        // y screw: threaded into a nut in the tab
        translate([ytab_xc, -ys_dy / 2 - 1, screw_z]) rotate([-90, 0, 0]) cylinder(d = screw_d + 0.3, h = ys_dy - 4);
        translate([ytab_xc - (nut_af + 0.3) / 2, -ys_dy / 2 + 5 - (nut_t + 0.3) / 2, screw_z - (nut_af + 0.3) / 2])
            cube([nut_af + 0.3, nut_t + 0.3, top]);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) stage_y();
