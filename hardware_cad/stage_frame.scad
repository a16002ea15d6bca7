// Stage frame: base plate (on the electronics housing) and back wall with the dovetail rail for the
// z carriage; the phone clamp bolts on top of the wall.  Its height follows from the optics (see
// params.scad): change the lens and the wall grows or shrinks so the sample stays in focus.
// Print standing on the base plate.  Frame: assembly coordinates (base underside at z = 0).
include <params.scad>

// part parameters
frame_wire_hole_d = 10.0;    // ring wires down into the housing
frame_counterbore_d = 6.5;

module stage_frame() {
    y_bolt = (y_wall_front + y_frame_back) / 2;
    difference() {
        union() {
            translate([-frame_w / 2, -base_front, 0]) cube([frame_w, y_frame_back + base_front, base_t]);
            translate([-frame_w / 2, y_wall_front, 0]) cube([frame_w, wall_t, frame_h]);
            // dovetail rail (overlaps the wall by 1 mm)
            translate([0, 0, base_t])
                linear_extrude(height = frame_h - base_t)
                    polygon([[-dt_w_root / 2, y_wall_front + 1], [dt_w_root / 2, y_wall_front + 1],
                             [dt_w_face / 2, y_wall_front - dt_depth], [-dt_w_face / 2, y_wall_front - dt_depth]]);
        }
        translate([0, 0, -1]) cylinder(d = frame_wire_hole_d, h = base_t + 2);
        // ring holder flange screws (pilot holes)
        for (a = [90, 210, 330])
            translate([cos(a) * (tube_od / 2 + 3.5), sin(a) * (tube_od / 2 + 3.5), -1])
                cylinder(d = screw_pilot_d, h = base_t + 2);
        // housing screws, heads counterbored from the top
        for (p = housing_screw_xy()) {
            translate([p[0], p[1], -1]) cylinder(d = screw_clear_d, h = base_t + 2);
            translate([p[0], p[1], base_t - screw_head_h - 0.3]) cylinder(d = frame_counterbore_d, h = frame_h);
        }
        // focus screw: free hole (knob under the base, lock nut on top)
        translate([ear_x, y_ear, -1]) cylinder(d = screw_clear_d, h = base_t + 2);
        // phone clamp bolts (pilot holes from the top of the wall)
        for (s = [-1, 1]) translate([s * clamp_bolt_dx, y_bolt, frame_h - 12]) cylinder(d = screw_pilot_d, h = 13);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) stage_frame();
