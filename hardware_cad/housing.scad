// Electronics housing: holds the microcontroller board, the LiPo cell and the boost/charger under the
// stage frame, which is its lid.  The back-right corner is cut away for the focus knob.  Print floor
// down.  Frame: floor underside at z = 0 (assembly z = -housing_h), x and y as in the assembly.
include <params.scad>

// part parameters (where the ports are: match them to your boards)
housing_floor_t = 2.0;
housing_boss_d = 7.0;
housing_board_usb_x = -14.0;         // centre of the board's USB cut-out in the front wall
housing_board_usb_w = 12.0;
housing_board_usb_h = 8.0;
housing_board_usb_z = 6.0;           // centre height above the floor underside
housing_charger_usb_y = 0.0;         // centre of the charger's USB cut-out in the -x wall
housing_charger_usb_w = 11.0;
housing_charger_usb_h = 7.0;
housing_charger_usb_z = 7.0;
housing_switch_y = 22.0;             // power switch hole in the -x wall
housing_switch_d = 6.5;
housing_switch_z = 16.0;

function housing_notch_min() = [ear_x - knob_d / 2 - 2, y_ear - knob_d / 2 - 2];

module housing_footprint() {
    difference() {
        translate([-frame_w / 2, -base_front]) square([frame_w, y_frame_back + base_front]);
        translate(housing_notch_min()) square([frame_w, y_frame_back]);
    }
}

module housing() {
    difference() {
        union() {
            difference() {
                linear_extrude(height = housing_h) housing_footprint();
                translate([0, 0, housing_floor_t]) linear_extrude(height = housing_h) offset(delta = -wall) housing_footprint();
            }
            for (p = housing_screw_xy()) translate([p[0], p[1], 0]) cylinder(d = housing_boss_d, h = housing_h);
        }
        for (p = housing_screw_xy()) translate([p[0], p[1], housing_h - 12]) cylinder(d = screw_pilot_d, h = 13);
        translate([housing_board_usb_x - housing_board_usb_w / 2, -base_front - 1, housing_board_usb_z - housing_board_usb_h / 2])
            cube([housing_board_usb_w, wall + 2, housing_board_usb_h]);
        translate([-frame_w / 2 - 1, housing_charger_usb_y - housing_charger_usb_w / 2, housing_charger_usb_z - housing_charger_usb_h / 2])
            cube([wall + 2, housing_charger_usb_w, housing_charger_usb_h]);
        translate([-frame_w / 2 - 1, housing_switch_y, housing_switch_z]) rotate([0, 90, 0]) cylinder(d = housing_switch_d, h = wall + 2);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) housing();
