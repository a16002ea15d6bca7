// Phone clamp: a cradle the phone slides into, screen up, from the back; the external lens sits in a
// bore centred on the camera, on a 0.4 mm lip, its top a small gap below the camera window.  The island
// channel lets a raised camera slide in.  Print flat, plate down (the lip is the first layers).
// Frame: plate underside at z = 0, optical axis at x = y = 0.
include <params.scad>

// part parameters
clamp_island_fit = 0.5;            // clearance around the camera island
clamp_front_stop_h = 5.0;          // height of the front stop above the plate
clamp_counterbore_d = 6.5;

cx0 = camera_x - phone_width - phone_fit;   // inner faces of the side walls
cx1 = camera_x + phone_fit;
y_front = -camera_y - phone_fit - wall;
clamp_xmin = min(cx0 - wall, -clamp_bolt_dx - 5);
clamp_xmax = max(cx1 + wall, clamp_bolt_dx + 5);
clamp_top = clamp_plate_t + phone_thickness + phone_fit + lip_t;

module side_wall(x_in, s) {
    // s = -1: wall on the -x side (inner face at x_in), s = +1: on the +x side
    len = y_frame_back - y_front;
    translate([s > 0 ? x_in : x_in - wall, y_front, 0]) cube([wall, len, clamp_top]);
    // lip over the screen edge, with a 45° chamfer underneath so it prints without support
    translate([0, y_front, clamp_top - lip_t]) rotate([-90, 0, 0]) linear_extrude(height = len)
        polygon(s > 0 ? [[x_in + 0.01, 0], [x_in - lip_overhang, 0], [x_in + 0.01, lip_overhang + 0.01]]
                      : [[x_in - 0.01, 0], [x_in + lip_overhang, 0], [x_in - 0.01, lip_overhang + 0.01]]);
    translate([s > 0 ? x_in - lip_overhang : x_in - 0.01, y_front, clamp_top - lip_t])
        cube([lip_overhang + 0.01, len, lip_t]);
}

module phone_clamp() {
    y_bolt = (y_wall_front + y_frame_back) / 2;
    difference() {
        union() {
            translate([clamp_xmin, y_front, 0]) cube([clamp_xmax - clamp_xmin, y_frame_back - y_front, clamp_plate_t]);
            side_wall(cx0, -1);
            side_wall(cx1, 1);
            translate([cx0 - wall, y_front, 0]) cube([cx1 - cx0 + 2 * wall, wall, clamp_plate_t + clamp_front_stop_h]);
        }
        // camera island pocket and the channel it slides in through
        translate([-camera_island_w / 2 - clamp_island_fit, -camera_island_l / 2 - clamp_island_fit,
                   clamp_plate_t - camera_island_h - 0.2])
            cube([camera_island_w + 2 * clamp_island_fit, y_frame_back + camera_island_l, camera_island_h + 1]);
        // lens bore and the lip's aperture
        translate([0, 0, lens_lip_t]) cylinder(d = lens_barrel_d + lens_press_fit, h = clamp_plate_t);
        translate([0, 0, -1]) cylinder(d = lens_clear_d, h = clamp_plate_t);
        // bolts into the top of the frame wall, heads below the phone
        for (s = [-1, 1]) {
            translate([s * clamp_bolt_dx, y_bolt, -1]) cylinder(d = screw_clear_d, h = clamp_plate_t + 2);
            translate([s * clamp_bolt_dx, y_bolt, clamp_plate_t - screw_head_h - 0.5])
                cylinder(d = clamp_counterbore_d, h = clamp_plate_t);
        }
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) phone_clamp();
