// Thumb knob for the three M3 drive screws: the screw goes through from below, a nut in the hex
// pocket locks it (add threadlocker).  Print three, pocket up.  Frame: bottom at z = 0, axis at 0, 0.
include <params.scad>

// part parameters
knob_grip_n = 16;                 // grip grooves (offset by half a step so the bounding box stays ±knob_d/2)
knob_grip_d = 2.0;

module knob() {
    difference() {
        cylinder(d = knob_d, h = knob_t);
        translate([0, 0, -1]) cylinder(d = screw_clear_d, h = knob_t + 2);
        translate([0, 0, knob_t - nut_t - 0.2]) cylinder(d = (nut_af + 0.2) / cos(30), h = knob_t, $fn = 6);
        for (i = [0 : knob_grip_n - 1]) {
            a = (i + 0.5) * 360 / knob_grip_n;
            translate([cos(a) * knob_d / 2, sin(a) * knob_d / 2, -1]) cylinder(d = knob_grip_d, h = knob_t + 2, $fn = 12);
        }
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) knob();
