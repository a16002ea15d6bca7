// Sample tray (x stage): holds a 75 x 25 mm slide over a window; an M3 nut in the +x end takes the x
// drive screw.  Print flat, top up, 0.2 mm layers.  Frame: tray bottom at z = 0, axis at x = y = 0.
include <params.scad>

// part parameters
tray_pocket_fit = 0.3;            // slide pocket clearance per side
tray_finger_d = 8.0;              // finger notches to lift the slide
tray_finger_x = 20.0;
tray_nut_slot_inset = 4.5;        // nut slot centre from the +x end

module sample_tray() {
    pocket_depth = slide_t - slide_proud;
    difference() {
        translate([-tray_dx / 2, -tray_dy / 2, 0]) cube([tray_dx, tray_dy, tray_t]);
        // slide pocket
        translate([-(slide_w / 2 + tray_pocket_fit), -(slide_d / 2 + tray_pocket_fit), tray_t - pocket_depth])
            cube([slide_w + 2 * tray_pocket_fit, slide_d + 2 * tray_pocket_fit, pocket_depth + 1]);
        // light window
        translate([-tray_window_x / 2, -tray_window_y / 2, -1]) cube([tray_window_x, tray_window_y, tray_t + 2]);
        // finger notches
        for (sx = [-1, 1], sy = [-1, 1])
            translate([sx * tray_finger_x, sy * (slide_d / 2 + tray_pocket_fit), 2]) cylinder(d = tray_finger_d, h = tray_t);
        // x drive: screw hole from the +x end, nut slot through the thickness
        translate([slide_w / 2 + tray_pocket_fit + 1, 0, tray_t / 2]) rotate([0, 90, 0])
            cylinder(d = screw_d + 0.3, h = tray_dx);
        translate([tray_dx / 2 - tray_nut_slot_inset - (nut_t + 0.3) / 2, -(nut_af + 0.3) / 2, -1])
            cube([nut_t + 0.3, nut_af + 0.3, tray_t + 2]);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) sample_tray();
