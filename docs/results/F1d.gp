# F1d: Test error rescaled to [0,1] per h vs √h α (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.01 0.4071856287 0.1171496859
0.1 0.247005988 0.1787966698
0.22 0.05389221557 0
0.46 0 0
1 0.1736526946 0.1100477602
10 0.08083832335 0.1137330534
100 0.6137724551 0.1137724551
1000 1 0.1295753593
10000 0.880239521 0.1616766467
EOD
set terminal pngcairo enhanced size 560,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F1d.png"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "(ε - ε_min) / (ε_max - ε_min)"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
set terminal svg enhanced size 560,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F1d.svg"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "(ε - ε_min) / (ε_max - ε_min)"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
unset output
